"""test_logging.py — the gateway's log as a shipper reads it (cpmgate.conf(5)
log_level, log_format): with log_format = json every line of the real
gateway's stderr is one JSON object with time, level, the key=value fields
that open the text form's message and msg, a client's bytes (control bytes,
a quote, a backslash) escaped; log_level hides less severe lines and a
SIGHUP changes both; the journal's <N> priority prefixes appear exactly
when $JOURNAL_STREAM names the gateway's stderr."""

import json
import os
import re
import socket
from pathlib import Path

import cg

TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')
LEVELS = {'error', 'warn', 'info', 'debug'}
# a login name a client chose: CR LF, ESC, a quote and a backslash that
# would read as an escape if it were not escaped itself
HOSTILE = b'x\r\n\x1b[0m"\\x0aFORGED'


def make_gateway(gateway_factory, pki, dovecot, env=None, **gateway):
    g = gateway_factory({
        'gateway': gateway,
        'listener imaps': cg.tls_listener(pki, 'imap', 'dovecot', auth='cert, login',
                                          login_failures_per_minute='1000'),
        'upstream dovecot': dovecot.upstream(),
    }, env=env)
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    g.ctl_ok('acl', 'allow', 'alice', 'imap', '*', 'all')
    return g


def failed_login(g, pki, name=HOSTILE):
    """LOGIN with name as a literal: refused after the failure delay."""
    s = cg.IMAPSession.open(g.addr('imaps'), cg.client_context(pki), timeout=20)
    s.sock.sendall(b'd LOGIN {%d}\r\n' % len(name))
    assert s.readline().startswith(b'+')
    s.sock.sendall(name + b' pw\r\n')
    line = s.readline()
    assert line.startswith(b'd NO [AUTHENTICATIONFAILED]'), line
    s.close()


def cert_connect(g, pki):
    """alice by her certificate: the gateway logs conn=, client=, listener=."""
    line = cg.imap_greeting(g.addr('imaps'), cg.client_context(pki, 'alice'))
    assert line is not None and line.startswith(b'* OK'), line


def log_lines(g):
    """The log's lines (split at LF only: a CR must never be in one)."""
    data = Path(g.log_path).read_bytes()
    assert data.endswith(b'\n'), data[-200:]
    return data[:-1].split(b'\n')


def test_json_lines_parse_with_the_fields_of_the_text_form(gateway_factory, pki, dovecot):
    g = make_gateway(gateway_factory, pki, dovecot, log_format='json', log_level='debug')
    g.start()
    cert_connect(g, pki)
    failed_login(g, pki)
    socket.create_connection(g.addr('imaps'), timeout=10).close()
    g.wait_log(r'login failed for', timeout=10)
    g.wait_log(r'closed during handshake', timeout=10)
    assert g.stop() == 0
    records = []
    for raw in log_lines(g):
        assert b'\r' not in raw and b'\x1b' not in raw, raw
        rec = json.loads(raw)     # every line, start to stop
        assert isinstance(rec, dict), raw
        assert TIME.match(rec['time']), rec
        assert rec['level'] in LEVELS, rec
        assert isinstance(rec['msg'], str), rec
        assert all(isinstance(v, str) for v in rec.values()), rec
        records.append((raw, rec))
    msgs = [r['msg'] for _, r in records]
    assert any(m.startswith('cpmgate ready: workers=2 listeners: imaps=') for m in msgs), msgs
    assert 'cpmgate stopped' in msgs, msgs

    # the text form's "conn=N client=A listener=L auth ..." as members
    auth = [r for _, r in records if r['msg'] == 'auth method=cert principal=alice']
    assert len(auth) == 1, msgs
    a = auth[0]
    assert a['level'] == 'info' and re.fullmatch(r'\d+', a['conn']), a
    assert re.fullmatch(r'127\.0\.0\.1:\d+', a['client']) and a['listener'] == 'imaps', a
    assert list(a) == ['time', 'level', 'conn', 'client', 'listener', 'msg'], a
    # log_level = debug: "conn=N client=A: closed during handshake"
    hs = [r for _, r in records if r['msg'] == 'closed during handshake']
    assert len(hs) == 1 and hs[0]['level'] == 'debug', msgs
    assert re.fullmatch(r'127\.0\.0\.1:\d+', hs[0]['client']), hs

    # the client's bytes come back exactly, and were escaped on the line
    failed = [(raw, r) for raw, r in records if 'login failed for' in r['msg']]
    assert len(failed) == 1, msgs
    raw, rec = failed[0]
    assert rec['msg'].startswith('imap login failed for "%s": ' % HOSTILE.decode()), rec
    assert b'x\\u000d\\u000a\\u001b[0m\\"\\\\x0aFORGED' in raw, raw
    assert not any(r['msg'].startswith('FORGED') for _, r in records)


def test_log_level_warn_hides_info_and_sighup_changes_it(gateway_factory, pki, dovecot):
    g = make_gateway(gateway_factory, pki, dovecot, log_level='warn')
    g.start()
    failed_login(g, pki)
    # a reload that changes a restart-only key: a warn line, and the
    # "reloaded" info line hidden
    g.sections['gateway']['workers'] = '3'
    g.write_config()
    g.reload()
    g.wait_log(r' warn reload: workers', timeout=10)
    text = g.log()
    assert ' info ' not in text, text
    assert 'cpmgate ready' not in text and 'login failed' not in text, text

    g.sections['gateway']['log_level'] = 'info'
    g.write_config()
    start = g.log_size()
    g.reload()
    g.wait_log(r' info configuration reloaded', timeout=10, start=start)
    failed_login(g, pki, b'nobody')
    g.wait_log(r' info conn=\d+ imap login failed for "nobody"', timeout=10, start=start)


def test_log_level_and_format_are_checked(gateway_factory, pki, dovecot):
    g = make_gateway(gateway_factory, pki, dovecot)
    for key, value in (('log_format', 'xml'), ('log_level', 'verbose')):
        lines = Path(g.config_path).read_text().splitlines()
        i = lines.index('[gateway]') + 1
        lines.insert(i, f'{key} = {value}')
        path = g.write_config(str(g.dir / 'bad.conf'), '\n'.join(lines) + '\n')
        r = g.check_config(path)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert f'bad.conf:{i + 1}: {key}: expected one of:' in out, out


def journal_env(path):
    st = os.stat(path)
    return {'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}


def test_journal_stream_on_stderr_gives_priority_prefixes(gateway_factory, pki, dovecot):
    g = make_gateway(gateway_factory, pki, dovecot)
    Path(g.log_path).touch()       # stderr: this file, which the variable names
    g.extra_env.update(journal_env(g.log_path))
    g.start()
    failed_login(g, pki)
    g.reload()
    g.wait_log(r'configuration reloaded', timeout=10)
    assert g.stop() == 0
    lines = log_lines(g)
    assert lines and all(re.match(rb'^<[3467]>\d{4}-', l) for l in lines), lines
    prio = {b'error': b'<3>', b'warn': b'<4>', b'info': b'<6>', b'debug': b'<7>'}
    for line in lines:
        level = line.split(b' ', 2)[1]
        assert line.startswith(prio[level]), line
    ready = [l for l in lines if b' info cpmgate ready' in l]
    assert len(ready) == 1 and ready[0].startswith(b'<6>'), lines
    # the text form escapes the backslash too: \x0a stays four characters
    failed = [l for l in lines if b'login failed for' in l]
    assert len(failed) == 1, lines
    assert b'"x\\x0d\\x0a\\x1b[0m"\\x5cx0aFORGED"' in failed[0], failed


def test_json_lines_get_the_prefix_too(gateway_factory, pki, dovecot):
    g = make_gateway(gateway_factory, pki, dovecot, log_format='json')
    Path(g.log_path).touch()
    g.extra_env.update(journal_env(g.log_path))
    g.start()
    assert g.stop() == 0
    lines = log_lines(g)
    assert lines, lines
    for line in lines:
        m = re.match(rb'^<([3467])>(\{.*\})$', line)
        assert m, line
        rec = json.loads(m.group(2))
        assert {b'3': 'error', b'4': 'warn', b'6': 'info', b'7': 'debug'}[m.group(1)] == rec['level']


def test_no_prefix_without_the_journal_or_on_another_stream(gateway_factory, pki, dovecot,
                                                          tmp_path, monkeypatch):
    # unset, and inherited but naming another file (stderr was redirected)
    monkeypatch.delenv('JOURNAL_STREAM', raising=False)
    (tmp_path / 'journal').touch()
    for env in ({}, journal_env(tmp_path / 'journal')):
        g = make_gateway(gateway_factory, pki, dovecot, env=env)
        g.start()
        assert g.stop() == 0
        lines = log_lines(g)
        assert lines and all(re.match(rb'^\d{4}-\d\d-\d\dT', l) for l in lines), (env, lines)


def test_a_start_that_fails_after_reading_the_file_logs_json(gateway_factory, pki, dovecot):
    # a key that is not the certificate's: found when TLS is set up, after
    # the file was read, so the one line says it in the configured form
    g = make_gateway(gateway_factory, pki, dovecot, log_format='json')
    g.sections['listener imaps']['private_key'] = pki.client('alice')[1]
    g.write_config()
    g.start(wait=False)
    cg.wait_until(lambda: not g.alive(), timeout=20, what='cpmgate to give up')
    assert g.stop() == 1
    recs = [json.loads(line) for line in log_lines(g)]
    assert [r['level'] for r in recs] == ['error'], recs
    assert recs[0]['msg'].startswith(g.config_path + ':0: '), recs
