/* policy_schema.h — the policy database schema, as numbered migrations.
 * PRAGMA user_version holds the number of migrations applied; a new
 * migration is appended, never edited (SQLite's own habit). */
#ifndef CG_POLICY_SCHEMA_H
#define CG_POLICY_SCHEMA_H

static const char *const cg_policy_migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE principal ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('user','server')),"
    "  mailbox TEXT,"                        /* IMAP login; NULL means name */
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  created TEXT NOT NULL);"
    /* type: cert (value = sha256 fingerprint, lowercase hex),
     *       cert-name (value = 'email:..' | 'dns:..' | 'uri:..' | 'cn:..'),
     *       psk (value = identity, secret = key bytes),
     *       address (value = canonical CIDR),
     *       digest (value = realm, ha1_md5/ha1_sha256 = hex HA1 for the
     *               principal's name as the Digest username) */
    "CREATE TABLE credential ("
    "  id INTEGER PRIMARY KEY,"
    "  principal_id INTEGER NOT NULL REFERENCES principal(id) ON DELETE CASCADE,"
    "  type TEXT NOT NULL CHECK (type IN ('cert','cert-name','psk','address','digest')),"
    "  value TEXT NOT NULL,"
    "  secret BLOB,"
    "  ha1_md5 TEXT,"
    "  ha1_sha256 TEXT,"
    "  created TEXT NOT NULL);"
    "CREATE UNIQUE INDEX credential_unique ON credential(type, value) WHERE type <> 'digest';"
    "CREATE UNIQUE INDEX credential_digest ON credential(principal_id, value) WHERE type = 'digest';"
    "CREATE TABLE grp ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created TEXT NOT NULL);"
    "CREATE TABLE grp_member ("
    "  group_id INTEGER NOT NULL REFERENCES grp(id) ON DELETE CASCADE,"
    "  principal_id INTEGER NOT NULL REFERENCES principal(id) ON DELETE CASCADE,"
    "  PRIMARY KEY (group_id, principal_id));"
    /* subject: principal name, '@group', or '*'; rights: bitmask of
     * enum cg_right (policy/acl.h) */
    "CREATE TABLE acl_rule ("
    "  id INTEGER PRIMARY KEY,"
    "  effect TEXT NOT NULL CHECK (effect IN ('allow','deny')),"
    "  subject TEXT NOT NULL,"
    "  service TEXT NOT NULL CHECK (service IN ('imap','http','*')),"
    "  pattern TEXT NOT NULL,"
    "  rights INTEGER NOT NULL CHECK (rights > 0 AND rights < 32),"
    "  comment TEXT,"
    "  created TEXT NOT NULL);"
    /* public keys that sign content manifests, each for one principal */
    "CREATE TABLE pubkey ("
    "  id INTEGER PRIMARY KEY,"
    "  key_id TEXT NOT NULL UNIQUE,"
    "  principal_id INTEGER NOT NULL REFERENCES principal(id) ON DELETE CASCADE,"
    "  alg TEXT NOT NULL CHECK (alg IN ('ecdsa-p256-sha256','ed25519','rsa-pss-sha256')),"
    "  pem TEXT NOT NULL,"
    "  created TEXT NOT NULL);"
    "CREATE TABLE require_signed ("
    "  pattern TEXT PRIMARY KEY,"
    "  created TEXT NOT NULL);"
    "CREATE TABLE peer ("
    "  domain TEXT PRIMARY KEY,"
    "  principal_id INTEGER NOT NULL REFERENCES principal(id),"
    "  auth TEXT NOT NULL CHECK (auth IN ('required','optional')),"
    "  created TEXT NOT NULL);"
    /* every change made with cpmgatectl, written in the change's own
     * transaction; the gateway copies new rows into the audit chain */
    "CREATE TABLE policy_log ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time TEXT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  operation TEXT NOT NULL,"
    "  detail TEXT NOT NULL);",
};

#endif
