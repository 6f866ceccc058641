/* saml.c — verification of SAML 2.0 bearer assertions (see saml.h).
 * Order: strict base64, a libxml2 parse with no network, no DTD and no
 * entities, the enveloped XML-DSig of the Assertion itself by the IdP key
 * (xmlsec, key never taken from KeyInfo), then the SAML conditions read
 * only from the element the signature covers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/valid.h>
#include <openssl/evp.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include "common/cg_base64.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/saml.h"
#include "policy/xml_safe.h"

#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define NS_DSIG "http://www.w3.org/2000/09/xmldsig#"
#define CM_BEARER "urn:oasis:names:tc:SAML:2.0:cm:bearer"

struct cg_saml_verifier {
    xmlSecKeyPtr key;      /* the IdP's public key, from its certificate */
    char *issuer, *audience;
    unsigned skew;
    uint64_t serial;       /* distinguishes verifiers in the cache */
};

/* ---- global init and error capture ------------------------------------- */

static _Thread_local char xmlsec_err[160];

/* xmlsec reports through one process-wide callback: keep the first
 * message of the current verification (per thread), print nothing. */
static void xmlsec_error_cb(const char *file, int line, const char *func,
                            const char *obj, const char *subj, int reason,
                            const char *msg)
{
    (void)file, (void)line, (void)func, (void)obj, (void)reason;
    if (!xmlsec_err[0])
        snprintf(xmlsec_err, sizeof xmlsec_err, "%s%s%s", subj ? subj : "",
                 subj && msg ? ": " : "", msg ? msg : "");
}

static void xml_quiet(void *ctx, xmlErrorPtr e)
{
    (void)ctx, (void)e;
}

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static bool initialised;

int cg_saml_global_init(const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = 0;
    pthread_mutex_lock(&init_mu);
    if (!initialised) {
        xmlInitParser();
        if (xmlSecInit() < 0) {
            *error_r = "xmlsec initialisation failed";
            rc = CG_E_CRYPTO;
        } else if (xmlSecCheckVersion() != 1) {
            *error_r = "xmlsec library version mismatch";
            rc = CG_E_CRYPTO;
        } else if (xmlSecCryptoAppInit(NULL) < 0 || xmlSecCryptoInit() < 0) {
            *error_r = "xmlsec OpenSSL backend initialisation failed";
            rc = CG_E_CRYPTO;
        } else {
            xmlSecErrorsSetCallback(xmlsec_error_cb);
            initialised = true;
        }
    }
    pthread_mutex_unlock(&init_mu);
    return rc;
}

void cg_saml_global_shutdown(void)
{
    pthread_mutex_lock(&init_mu);
    if (initialised) {
        xmlSecCryptoShutdown();
        xmlSecCryptoAppShutdown();
        xmlSecShutdown();
        initialised = false;
    }
    pthread_mutex_unlock(&init_mu);
}

/* ---- verifier ----------------------------------------------------------- */

static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cg_saml_verifier_new(const cg_saml_params *p, cg_saml_verifier **out,
                         const char **error_r)
{
    static uint64_t serials;
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *out = NULL;
    if (!initialised) {
        *error_r = "cg_saml_global_init was not called";
        return CG_E_INVAL;
    }
    if (!p->issuer || !*p->issuer || !p->audience || !*p->audience) {
        *error_r = "SAML issuer and audience must be set";
        return CG_E_INVAL;
    }
    size_t len = 0;
    char *pem = NULL;
    if (p->idp_cert_pem) {
        len = strlen(p->idp_cert_pem);
    } else if (!p->idp_cert_path || !(pem = read_file(p->idp_cert_path, 1 << 20, &len))) {
        *error_r = "cannot read the SAML IdP certificate";
        return CG_E_IO;
    }
    xmlsec_err[0] = '\0';
    xmlSecKeyPtr key = xmlSecCryptoAppKeyLoadMemory(
        (const xmlSecByte *)(pem ? pem : p->idp_cert_pem), (xmlSecSize)len,
        xmlSecKeyDataFormatCertPem, NULL, NULL, NULL);
    free(pem);
    if (!key) {
        *error_r = "the SAML IdP certificate is not a PEM certificate with a usable key";
        return CG_E_CRYPTO;
    }
    cg_saml_verifier *v = calloc(1, sizeof *v);
    if (!v || !(v->issuer = strdup(p->issuer)) || !(v->audience = strdup(p->audience))) {
        xmlSecKeyDestroy(key);
        cg_saml_verifier_free(v);
        return CG_E_NOMEM;
    }
    v->key = key;
    v->skew = p->clock_skew;
    v->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
    *out = v;
    return 0;
}

void cg_saml_verifier_free(cg_saml_verifier *v)
{
    if (!v)
        return;
    if (v->key)
        xmlSecKeyDestroy(v->key);
    free(v->issuer);
    free(v->audience);
    free(v);
}

/* ---- tree helpers ------------------------------------------------------- */

static bool is_el(xmlNodePtr n, const char *name, const char *ns)
{
    return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name) &&
           n->ns && xmlStrEqual(n->ns->href, BAD_CAST ns);
}

/* The single child element name/ns of parent; *count says how many. */
static xmlNodePtr child(xmlNodePtr parent, const char *name, const char *ns, int *count)
{
    xmlNodePtr first = NULL;
    int n = 0;
    for (xmlNodePtr c = parent->children; c; c = c->next) {
        if (is_el(c, name, ns)) {
            if (!first)
                first = c;
            n++;
        }
    }
    if (count)
        *count = n;
    return first;
}

/* Text of an element that holds only text: a comment or element inside
 * is refused, so "alice<!---->.evil" cannot read as two different names
 * to the signature and to us (CVE-2017-11427 and relatives). */
static int text_of(xmlNodePtr el, char *out, size_t cap)
{
    size_t n = 0;
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            return CG_E_PARSE;
        size_t l = strlen((const char *)c->content);
        if (n + l >= cap)
            return CG_E_LIMIT;
        memcpy(out + n, c->content, l);
        n += l;
    }
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            return CG_E_PARSE;
    return n ? 0 : CG_E_PARSE;
}

/* xs:dateTime in UTC: YYYY-MM-DDTHH:MM:SS[.fraction][Z] (SAML core 1.3.3) */
static int parse_time(const xmlChar *s, int64_t *out)
{
    if (!s)
        return CG_E_PARSE;
    const char *p = (const char *)s;
    int f[6];
    static const char seps[] = "--T::";
    static const int widths[] = { 4, 2, 2, 2, 2, 2 };
    for (int i = 0; i < 6; i++) {
        f[i] = 0;
        for (int k = 0; k < widths[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                return CG_E_PARSE;
            f[i] = f[i] * 10 + (*p - '0');
        }
        if (i < 5 && *p++ != seps[i])
            return CG_E_PARSE;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return CG_E_PARSE;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z')
        p++;
    if (*p || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 ||
        f[5] > 60)
        return CG_E_PARSE;
    struct tm tm = { .tm_year = f[0] - 1900, .tm_mon = f[1] - 1, .tm_mday = f[2],
                     .tm_hour = f[3], .tm_min = f[4], .tm_sec = f[5] };
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* Is any element other than root carrying ID="id"? (a twin the signature
 * might resolve to instead of the element we read) */
static bool id_twin(xmlNodePtr n, xmlNodePtr root, const xmlChar *id, int depth)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (n != root) {
            xmlChar *v = xmlGetNoNsProp(n, BAD_CAST "ID");
            bool same = v && xmlStrEqual(v, id);
            xmlFree(v);
            if (same)
                return true;
        }
        if (depth < 256 && id_twin(n->children, root, id, depth + 1))
            return true;
    }
    return false;
}

/* ---- the signature ------------------------------------------------------ */

static int enable_transforms(xmlSecDSigCtxPtr d)
{
    /* Reference: enveloped signature, exclusive c14n, SHA-2 digests only. */
    xmlSecTransformId ref[] = { xmlSecTransformEnvelopedId, xmlSecTransformExclC14NId,
                                xmlSecTransformSha256Id, xmlSecTransformSha384Id,
                                xmlSecTransformSha512Id };
    /* SignedInfo: exclusive c14n and RSA / ECDSA with SHA-2. */
    xmlSecTransformId sig[] = { xmlSecTransformExclC14NId, xmlSecTransformRsaSha256Id,
                                xmlSecTransformRsaSha384Id, xmlSecTransformRsaSha512Id,
                                xmlSecTransformEcdsaSha256Id, xmlSecTransformEcdsaSha384Id,
                                xmlSecTransformEcdsaSha512Id };
    for (size_t i = 0; i < CG_ARRAY_LEN(ref); i++)
        if (xmlSecDSigCtxEnableReferenceTransform(d, ref[i]) < 0)
            return CG_E_CRYPTO;
    for (size_t i = 0; i < CG_ARRAY_LEN(sig); i++)
        if (xmlSecDSigCtxEnableSignatureTransform(d, sig[i]) < 0)
            return CG_E_CRYPTO;
    /* "#id" only: no external URIs, no whole-document "" reference */
    d->enabledReferenceUris = xmlSecTransformUriTypeSameDocument;
    return 0;
}

static int verify_signature(const cg_saml_verifier *v, xmlDocPtr doc, xmlNodePtr root,
                            xmlNodePtr sig, const xmlChar *id, const char **error_r)
{
    static const xmlChar *ids[] = { BAD_CAST "ID", NULL };
    xmlSecAddIDs(doc, root, ids);
    xmlAttrPtr idattr = xmlGetID(doc, id);
    if (!idattr || idattr->parent != root || id_twin(root, root, id, 0)) {
        *error_r = "SAML assertion ID is not unique";
        return CG_E_AUTH;
    }
    xmlSecDSigCtxPtr d = xmlSecDSigCtxCreate(NULL); /* no keys manager */
    if (!d) {
        *error_r = "SAML signature context could not be made";
        return CG_E_AUTH;
    }
    int rc = CG_E_AUTH;
    /* The key is set before processing, so xmlsec never looks for one in
     * KeyInfo: a signature by any other key fails. */
    d->signKey = xmlSecKeyDuplicate(v->key);
    if (!d->signKey || enable_transforms(d) < 0) {
        *error_r = "SAML signature context could not be made";
        goto out;
    }
    xmlsec_err[0] = '\0';
    if (xmlSecDSigCtxVerify(d, sig) < 0) {
        *error_r = "SAML signature could not be processed (disallowed transform, algorithm or reference)";
        goto out;
    }
    if (d->status != xmlSecDSigStatusSucceeded) {
        *error_r = "SAML signature is invalid";
        goto out;
    }
    /* Exactly one Reference, naming this Assertion: a signature over some
     * other element (a wrapped original) proves nothing about this one. */
    if (xmlSecPtrListGetSize(&d->signedInfoReferences) != 1) {
        *error_r = "SAML signature must have exactly one Reference";
        goto out;
    }
    xmlSecDSigReferenceCtxPtr r = xmlSecPtrListGetItem(&d->signedInfoReferences, 0);
    if (!r || !r->uri || r->uri[0] != '#' || !xmlStrEqual(r->uri + 1, id) ||
        r->status != xmlSecDSigStatusSucceeded) {
        *error_r = "SAML signature does not cover the assertion itself";
        goto out;
    }
    rc = 0;
out:
    xmlSecDSigCtxDestroy(d);
    return rc;
}

/* ---- SAML checks -------------------------------------------------------- */

static int check_conditions(const cg_saml_verifier *v, xmlNodePtr root, int64_t now,
                            int64_t *expires, const char **error_r)
{
    int n;
    xmlNodePtr cond = child(root, "Conditions", NS_SAML, &n);
    if (n != 1) {
        *error_r = "SAML assertion needs exactly one Conditions";
        return CG_E_AUTH;
    }
    int64_t t;
    xmlChar *nb = xmlGetNoNsProp(cond, BAD_CAST "NotBefore");
    xmlChar *na = xmlGetNoNsProp(cond, BAD_CAST "NotOnOrAfter");
    int rc = 0;
    if (nb && (parse_time(nb, &t) < 0 || now + (int64_t)v->skew < t)) {
        *error_r = "SAML assertion is not yet valid (NotBefore)";
        rc = CG_E_AUTH;
    } else if (na && (parse_time(na, &t) < 0 || now - (int64_t)v->skew >= t)) {
        *error_r = "SAML assertion has expired (NotOnOrAfter)";
        rc = CG_E_AUTH;
    } else if (na && t < *expires) {
        *expires = t;
    }
    xmlFree(nb);
    xmlFree(na);
    if (rc < 0)
        return rc;
    /* Every AudienceRestriction must name us (SAML core 2.5.1.4). */
    int nr = 0;
    for (xmlNodePtr ar = cond->children; ar; ar = ar->next) {
        if (!is_el(ar, "AudienceRestriction", NS_SAML))
            continue;
        nr++;
        bool ours = false;
        for (xmlNodePtr a = ar->children; a; a = a->next) {
            char aud[1024];
            if (is_el(a, "Audience", NS_SAML) && text_of(a, aud, sizeof aud) == 0 &&
                strcmp(aud, v->audience) == 0)
                ours = true;
        }
        if (!ours) {
            *error_r = "SAML assertion is for another audience";
            return CG_E_AUTH;
        }
    }
    if (nr == 0) {
        *error_r = "SAML assertion has no AudienceRestriction";
        return CG_E_AUTH;
    }
    return 0;
}

static int check_subject(const cg_saml_verifier *v, xmlNodePtr root, int64_t now,
                         cg_saml_result *res, const char **error_r)
{
    int n;
    xmlNodePtr subj = child(root, "Subject", NS_SAML, &n);
    if (n != 1) {
        *error_r = "SAML assertion needs exactly one Subject";
        return CG_E_AUTH;
    }
    xmlNodePtr nameid = child(subj, "NameID", NS_SAML, &n);
    if (n != 1 || text_of(nameid, res->name_id, sizeof res->name_id) < 0) {
        *error_r = "SAML Subject needs exactly one plain-text NameID";
        return CG_E_AUTH;
    }
    /* SAML profiles 4.1.4.2: a bearer confirmation with a NotOnOrAfter
     * and our Recipient */
    bool wrong_recipient = false;
    for (xmlNodePtr sc = subj->children; sc; sc = sc->next) {
        if (!is_el(sc, "SubjectConfirmation", NS_SAML))
            continue;
        xmlChar *m = xmlGetNoNsProp(sc, BAD_CAST "Method");
        bool bearer = m && xmlStrEqual(m, BAD_CAST CM_BEARER);
        xmlFree(m);
        xmlNodePtr scd = bearer ? child(sc, "SubjectConfirmationData", NS_SAML, &n) : NULL;
        if (!scd || n != 1)
            continue;
        int64_t t, nbt;
        xmlChar *na = xmlGetNoNsProp(scd, BAD_CAST "NotOnOrAfter");
        xmlChar *nb = xmlGetNoNsProp(scd, BAD_CAST "NotBefore");
        /* profiles 4.1.4.2: the bearer's Recipient is the URL the assertion
         * was made for; one made for another service provider that shares
         * our IdP and audience string must not be replayed here */
        xmlChar *rcpt = xmlGetNoNsProp(scd, BAD_CAST "Recipient");
        bool ok = na && parse_time(na, &t) == 0 && now - (int64_t)v->skew < t &&
                  (!nb || (parse_time(nb, &nbt) == 0 && now + (int64_t)v->skew >= nbt));
        bool ours = rcpt && xmlStrEqual(rcpt, BAD_CAST v->audience);
        xmlFree(na);
        xmlFree(nb);
        xmlFree(rcpt);
        if (ok && !ours) {
            wrong_recipient = true;
            continue;
        }
        if (ok) {
            if (t < res->expires)
                res->expires = t;
            return 0;
        }
    }
    *error_r = wrong_recipient
                   ? "SAML bearer SubjectConfirmation is for another Recipient"
                   : "SAML assertion has no current bearer SubjectConfirmation";
    return CG_E_AUTH;
}

int cg_saml_verify_xml(const cg_saml_verifier *v, const char *xml, size_t len,
                       int64_t now, cg_saml_result *out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    memset(out, 0, sizeof *out);
    out->expires = INT64_MAX;
    static const cg_xml_limits limits = {
        .what = "SAML assertion",
        .max_bytes = CG_SAML_MAX_XML,
        .max_depth = CG_SAML_MAX_DEPTH,
    };
    xmlDocPtr doc = NULL;
    if (cg_xml_parse_untrusted(xml, len, &limits, &doc, error_r) < 0)
        return CG_E_AUTH;
    xmlSetStructuredErrorFunc(NULL, xml_quiet); /* per thread in libxml2 */
    int rc = CG_E_AUTH;
    xmlChar *id = NULL, *ver = NULL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root || !is_el(root, "Assertion", NS_SAML)) {
        *error_r = "SAML credentials are not a saml:Assertion";
        goto out;
    }
    ver = xmlGetNoNsProp(root, BAD_CAST "Version");
    id = xmlGetNoNsProp(root, BAD_CAST "ID");
    if (!ver || !xmlStrEqual(ver, BAD_CAST "2.0") || !id || !id[0] || xmlStrlen(id) > 256) {
        *error_r = "SAML assertion lacks Version 2.0 or an ID";
        goto out;
    }
    int n;
    xmlNodePtr sig = child(root, "Signature", NS_DSIG, &n);
    if (n != 1) {
        *error_r = n ? "SAML assertion has more than one Signature"
                     : "SAML assertion is not signed";
        goto out;
    }
    if (verify_signature(v, doc, root, sig, id, error_r) < 0)
        goto out;
    char issuer[1024];
    xmlNodePtr iss = child(root, "Issuer", NS_SAML, &n);
    if (n != 1 || text_of(iss, issuer, sizeof issuer) < 0 || strcmp(issuer, v->issuer) != 0) {
        *error_r = "SAML assertion is from another issuer";
        goto out;
    }
    if (check_conditions(v, root, now, &out->expires, error_r) < 0 ||
        check_subject(v, root, now, out, error_r) < 0)
        goto out;
    rc = 0;
out:
    xmlFree(id);
    xmlFree(ver);
    xmlFreeDoc(doc);
    xmlSetStructuredErrorFunc(NULL, NULL);
    if (rc < 0)
        out->name_id[0] = '\0';
    return rc;
}

int cg_saml_verify_b64(const cg_saml_verifier *v, const char *b64, size_t len,
                       int64_t now, cg_saml_result *out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (len > CG_B64_ENCLEN(CG_SAML_MAX_XML)) {
        *error_r = "SAML assertion too large";
        return CG_E_AUTH;
    }
    char *xml = malloc(CG_B64_DECLEN(len) + 1);
    if (!xml) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    int n = cg_b64_decode(b64, len, (uint8_t *)xml, CG_B64_DECLEN(len));
    int rc;
    if (n <= 0) {
        *error_r = "SAML credentials are not valid base64";
        rc = CG_E_AUTH;
    } else {
        rc = cg_saml_verify_xml(v, xml, (size_t)n, now, out, error_r);
    }
    free(xml);
    return rc;
}

/* ---- per-thread cache --------------------------------------------------- */

typedef struct cache_entry {
    uint8_t hash[32];
    uint64_t serial;
    int64_t expires;
    char name[CG_SAML_NAME_MAX];
    bool used;
} cache_entry;

static _Thread_local cache_entry cache[CG_SAML_CACHE_SLOTS];
static _Thread_local unsigned cache_next;
static _Thread_local uint64_t cache_hits;

uint64_t cg_saml_cache_hits(void)
{
    return cache_hits;
}

void cg_saml_cache_clear(void)
{
    memset(cache, 0, sizeof cache);
    cache_next = 0;
}

int cg_saml_authenticate(const cg_saml_verifier *v, const char *b64,
                         size_t len, const cg_snapshot *snap,
                         const cg_principal **who, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *who = NULL;
    int64_t now = (int64_t)time(NULL);
    uint8_t h[32];
    unsigned hl = 0;
    if (!EVP_Digest(b64, len, h, &hl, EVP_sha256(), NULL)) {
        *error_r = "hash failed";
        return CG_E_AUTH;
    }
    const char *name = NULL;
    for (size_t i = 0; i < CG_SAML_CACHE_SLOTS; i++) {
        cache_entry *e = &cache[i];
        if (e->used && e->serial == v->serial && memcmp(e->hash, h, 32) == 0) {
            if (now - (int64_t)v->skew < e->expires) {
                name = e->name;
                cache_hits++;
            }
            else
                e->used = false; /* expired: verify again, which refuses it */
            break;
        }
    }
    cg_saml_result res;
    if (!name) {
        int rc = cg_saml_verify_b64(v, b64, len, now, &res, error_r);
        if (rc < 0)
            return rc;
        cache_entry *e = &cache[cache_next++ % CG_SAML_CACHE_SLOTS];
        memcpy(e->hash, h, 32);
        e->serial = v->serial;
        e->expires = res.expires;
        cg_strlcpy(e->name, res.name_id, sizeof e->name);
        e->used = true;
        name = e->name;
    }
    /* the principal is looked up in the current snapshot every time, so
     * a disabled or removed principal is refused even while cached */
    const cg_principal *p = cg_snapshot_principal_by_name(snap, name);
    if (!p) {
        *error_r = "SAML NameID names no known principal";
        return CG_E_AUTH;
    }
    *who = p;
    if (!p->enabled) {
        *error_r = "principal is disabled";
        return CG_E_AUTH;
    }
    return 0;
}
