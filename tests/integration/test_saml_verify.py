"""SAML assertion verification (policy/saml.c) against assertions signed at
test time by xmlsec1's command-line tool with a test IdP key made with
openssl: valid, expired, wrong audience, wrong issuer, unsigned,
signature-wrapped, a signature by another key carried in KeyInfo, and
hostile XML. Runs tests/tools/saml_check from $CPMGATE_BUILD."""

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cg  # noqa: E402

SAML_CHECK = cg.BUILD / 'tests' / 'unit' / 'saml_check'
ISSUER = 'https://idp.example.com/'
AUDIENCE = 'https://gw.example.com/'

pytestmark = pytest.mark.skipif(shutil.which('xmlsec1') is None,
                                reason='xmlsec1 command-line tool missing')


def iso(t):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))


SIG_TEMPLATE = (
    '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
    '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '<ds:SignatureMethod Algorithm="{sigalg}"/>'
    '<ds:Reference URI="#{id}"><ds:Transforms>'
    '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
    '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '</ds:Transforms><ds:DigestMethod Algorithm="{digest}"/>'
    '<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>{keyinfo}'
    '</ds:Signature>')
SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256'
SHA1 = 'http://www.w3.org/2000/09/xmldsig#sha1'
RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256'
RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1'
ECDSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256'


def assertion(id_='_a1', name='alice', issuer=ISSUER, audience=AUDIENCE,
              not_before=None, not_after=None, scd_not_after=None,
              method='urn:oasis:names:tc:SAML:2.0:cm:bearer', signature=True,
              digest=SHA256, keyinfo='', advice='', sigalg=RSA_SHA256, recipient=AUDIENCE):
    now = int(time.time())
    nb = iso(now - 60) if not_before is None else iso(not_before)
    na = iso(now + 600) if not_after is None else iso(not_after)
    sna = iso(now + 600) if scd_not_after is None else iso(scd_not_after)
    sig = SIG_TEMPLATE.format(id=id_, digest=digest, keyinfo=keyinfo, sigalg=sigalg) if signature else ''
    rcpt = f' Recipient="{recipient}"' if recipient is not None else ''
    return (
        '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{id_}" Version="2.0" IssueInstant="{iso(now)}">'
        f'<saml:Issuer>{issuer}</saml:Issuer>{sig}'
        f'<saml:Subject><saml:NameID>{name}</saml:NameID>'
        f'<saml:SubjectConfirmation Method="{method}">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="{sna}"{rcpt}/>'
        '</saml:SubjectConfirmation></saml:Subject>'
        f'<saml:Conditions NotBefore="{nb}" NotOnOrAfter="{na}">'
        f'<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience>'
        '</saml:AudienceRestriction></saml:Conditions>'
        f'{advice}</saml:Assertion>')


@pytest.fixture(scope='module')
def idp(tmp_path_factory):
    d = tmp_path_factory.mktemp('saml')
    for name in ('idp', 'evil'):
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                        '-keyout', str(d / f'{name}.key'), '-out', str(d / f'{name}.pem'),
                        '-days', '2', '-subj', f'/CN={name}'],
                       check=True, capture_output=True)
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', str(d / 'ecidp.key'),
                    '-out', str(d / 'ecidp.pem'), '-days', '2', '-subj', '/CN=ecidp'],
                   check=True, capture_output=True)
    return d


def sign(idp, xml, key='idp'):
    """Signs xml (a template with an empty Signature) with xmlsec1."""
    src = idp / 'tmpl.xml'
    out = idp / 'signed.xml'
    src.write_text(xml)
    subprocess.run(['xmlsec1', '--sign', '--privkey-pem',
                    f'{idp / (key + ".key")},{idp / (key + ".pem")}',
                    '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:assertion:Assertion',
                    '--output', str(out), str(src)], check=True, capture_output=True)
    return out.read_text()


def check(idp, xml, b64=False, skew=0, cert='idp'):
    f = idp / 'check.xml'
    data = xml.encode()
    f.write_bytes(base64.b64encode(data) if b64 else data)
    args = [str(SAML_CHECK), '--cert', str(idp / f'{cert}.pem'), '--issuer', ISSUER,
            '--audience', AUDIENCE, '--skew', str(skew)]
    if b64:
        args.append('--b64')
    p = subprocess.run(args + [str(f)], capture_output=True, text=True,
                       env=cg.sanitizer_env(), timeout=30)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    for pat in cg.SANITIZER_PATTERNS:
        assert pat not in p.stderr, p.stderr
    return p.returncode, p.stdout.strip()


def test_valid_signed_assertion_names_the_principal(idp):
    rc, out = check(idp, sign(idp, assertion()))
    assert rc == 0 and out.startswith('ok alice '), out


def test_valid_assertion_in_base64_as_sent_in_the_header(idp):
    rc, out = check(idp, sign(idp, assertion(name='bob')), b64=True)
    assert rc == 0 and out.startswith('ok bob '), out


def test_invalid_base64_is_refused(idp):
    f = idp / 'bad.b64'
    f.write_text('PHNhbWw6QX!!!')
    p = subprocess.run([str(SAML_CHECK), '--cert', str(idp / 'idp.pem'), '--issuer', ISSUER,
                        '--audience', AUDIENCE, '--b64', str(f)],
                       capture_output=True, text=True, env=cg.sanitizer_env())
    assert p.returncode == 1 and 'base64' in p.stdout


def test_expired_assertion_is_refused(idp):
    past = int(time.time()) - 3600
    rc, out = check(idp, sign(idp, assertion(not_before=past - 600, not_after=past)))
    assert rc == 1 and 'expired' in out, out


def test_expired_bearer_confirmation_is_refused(idp):
    past = int(time.time()) - 3600
    rc, out = check(idp, sign(idp, assertion(scd_not_after=past)))
    assert rc == 1 and 'bearer' in out, out


def test_not_yet_valid_is_refused_unless_within_clock_skew(idp):
    xml = sign(idp, assertion(not_before=int(time.time()) + 30))
    rc, out = check(idp, xml, skew=0)
    assert rc == 1 and 'not yet valid' in out, out
    rc, out = check(idp, xml, skew=600)
    assert rc == 0, out


def test_wrong_audience_is_refused(idp):
    rc, out = check(idp, sign(idp, assertion(audience='https://other.example.com/')))
    assert rc == 1 and 'audience' in out, out


def test_bearer_confirmation_for_another_recipient_is_refused(idp):
    # SAML profiles 4.1.4.2: made for another service provider behind the
    # same IdP and audience string, it must not be accepted here
    rc, out = check(idp, sign(idp, assertion(recipient='https://other.example.com/acs')))
    assert rc == 1 and 'Recipient' in out, out


def test_bearer_confirmation_without_a_recipient_is_refused(idp):
    rc, out = check(idp, sign(idp, assertion(recipient=None)))
    assert rc == 1 and 'bearer' in out, out


def test_wrong_issuer_is_refused(idp):
    rc, out = check(idp, sign(idp, assertion(issuer='https://evil.example.com/')))
    assert rc == 1 and 'issuer' in out, out


def test_non_bearer_confirmation_is_refused(idp):
    xml = sign(idp, assertion(method='urn:oasis:names:tc:SAML:2.0:cm:holder-of-key'))
    rc, out = check(idp, xml)
    assert rc == 1 and 'bearer' in out, out


def test_unsigned_assertion_is_refused(idp):
    rc, out = check(idp, assertion(signature=False))
    assert rc == 1 and 'not signed' in out, out


def test_tampered_nameid_is_refused(idp):
    xml = sign(idp, assertion(name='alice')).replace('>alice<', '>admin<')
    rc, out = check(idp, xml)
    assert rc == 1 and 'invalid' in out, out


def test_comment_inside_nameid_is_refused(idp):
    # the signature (exc-c14n without comments) covers "alice.evil" either way;
    # a reader that stops at the comment would see "alice"
    xml = sign(idp, assertion(name='alice<!---->.evil'))
    rc, out = check(idp, xml)
    assert rc == 1 and 'NameID' in out, out


def test_signature_by_another_key_in_keyinfo_is_refused(idp):
    keyinfo = '<ds:KeyInfo><ds:KeyValue/></ds:KeyInfo>'
    xml = sign(idp, assertion(keyinfo=keyinfo), key='evil')
    assert '<ds:KeyValue><ds:RSAKeyValue>' in xml or 'RSAKeyValue' in xml
    rc, out = check(idp, xml)
    assert rc == 1 and 'invalid' in out, out
    # the same assertion checks out against the key that signed it
    rc, out = check(idp, xml, cert='evil')
    assert rc == 0, out


def test_sha1_digest_is_refused(idp):
    rc, out = check(idp, sign(idp, assertion(digest=SHA1)))
    assert rc == 1 and 'disallowed' in out, out


def test_ecdsa_signed_assertion_from_an_ec_idp(idp):
    xml = sign(idp, assertion(sigalg=ECDSA_SHA256), key='ecidp')
    rc, out = check(idp, xml, cert='ecidp')
    assert rc == 0 and out.startswith('ok alice '), out
    # and the RSA IdP's certificate does not accept it
    rc, out = check(idp, xml, cert='idp')
    assert rc == 1, out


def test_rsa_sha1_signature_is_refused(idp):
    rc, out = check(idp, sign(idp, assertion(sigalg=RSA_SHA1)))
    assert rc == 1 and 'disallowed' in out, out


def split_signed(xml):
    """(assertion without its Signature, the Signature element)"""
    m = re.search(r'<ds:Signature .*?</ds:Signature>', xml, re.S)
    return xml[:m.start()] + xml[m.end():], m.group(0)


def body(xml):
    return re.sub(r'^<\?xml[^>]*>\s*', '', xml)


def test_wrapping_evil_assertion_outside_signed_one_is_refused(idp):
    signed = body(sign(idp, assertion(id_='_a1', name='alice')))
    inner, sig = split_signed(signed)
    # the evil root carries the original Signature (Reference #_a1), the
    # genuine signed assertion hides inside Advice where #_a1 resolves
    evil = assertion(id_='_evil', name='mallory', signature=False,
                     advice=f'<saml:Advice>{signed}</saml:Advice>')
    evil = evil.replace('</saml:Issuer>', '</saml:Issuer>' + sig, 1)
    rc, out = check(idp, evil)
    assert rc == 1, out
    # with the signed copy's own signature stripped (the moved one only):
    # the signature itself is valid over the hidden original, so only the
    # "Reference must name the root" rule refuses this one
    evil2 = assertion(id_='_evil', name='mallory', signature=False,
                      advice=f'<saml:Advice>{inner}</saml:Advice>')
    evil2 = evil2.replace('</saml:Issuer>', '</saml:Issuer>' + sig, 1)
    rc, out = check(idp, evil2)
    assert rc == 1 and 'does not cover' in out, out


def test_wrapping_with_duplicate_id_is_refused(idp):
    signed = body(sign(idp, assertion(id_='_a1', name='alice')))
    _, sig = split_signed(signed)
    # evil root takes the genuine ID; the signed original is moved below it
    evil = assertion(id_='_a1', name='mallory', signature=False,
                     advice=f'<saml:Advice>{signed}</saml:Advice>')
    evil = evil.replace('</saml:Issuer>', '</saml:Issuer>' + sig, 1)
    rc, out = check(idp, evil)
    assert rc == 1, out
    assert 'not unique' in out, out


def test_signed_assertion_moved_under_a_wrapper_is_refused(idp):
    signed = body(sign(idp, assertion()))
    wrapped = ('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
               f'{signed}</samlp:Response>')
    rc, out = check(idp, wrapped)
    assert rc == 1 and 'not a saml:Assertion' in out, out


def test_signature_not_enveloped_in_the_assertion_is_refused(idp):
    signed = body(sign(idp, assertion()))
    inner, sig = split_signed(signed)
    moved = inner.replace('</saml:Subject>', sig + '</saml:Subject>', 1)
    rc, out = check(idp, moved)
    assert rc == 1 and 'not signed' in out, out


@pytest.mark.parametrize('hostile,why', [
    ('<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><saml:Assertion '
     'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&c;</saml:Assertion>', 'DOCTYPE'),
    ('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><saml:Assertion '
     'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&x;</saml:Assertion>', 'DOCTYPE'),
    ('<saml:Assertion', 'well-formed'),
    ('x' * 70000, 'too large'),
])
def test_hostile_xml_is_refused(idp, hostile, why):
    rc, out = check(idp, hostile)
    assert rc == 1 and why in out, out


# ---- what the gateway runs: cache and principal lookup in the snapshot --

@pytest.fixture(scope='module')
def policy_db(idp):
    db = idp / 'policy.db'
    for args in (['init'], ['principal', 'add', 'alice'], ['principal', 'add', 'bob'],
                 ['principal', 'disable', 'bob'],
                 ['acl', 'allow', '*', 'http', '/content/*', 'read']):
        p = subprocess.run([str(cg.CPMGATECTL), '-d', str(db)] + args, capture_output=True,
                           text=True, env=cg.sanitizer_env())
        assert p.returncode == 0, p.stderr
    return db


def authenticate(idp, db, xml):
    f = idp / 'auth.b64'
    f.write_bytes(base64.b64encode(xml.encode()))
    p = subprocess.run([str(SAML_CHECK), '--cert', str(idp / 'idp.pem'), '--issuer', ISSUER,
                        '--audience', AUDIENCE, '--db', str(db), str(f)],
                       capture_output=True, text=True, env=cg.sanitizer_env(), timeout=30)
    for pat in cg.SANITIZER_PATTERNS:
        assert pat not in p.stderr, p.stderr
    return p.returncode, p.stdout.splitlines()


def test_verified_assertion_is_cached_for_the_next_request(idp, policy_db):
    rc, lines = authenticate(idp, policy_db, sign(idp, assertion(name='alice')))
    assert rc == 0 and lines == ['ok alice', 'ok alice cached'], lines


def test_nameid_of_no_known_principal_is_refused(idp, policy_db):
    rc, lines = authenticate(idp, policy_db, sign(idp, assertion(name='mallory')))
    assert rc == 1 and 'no known principal' in lines[0], lines


def test_nameid_of_a_disabled_principal_is_refused(idp, policy_db):
    rc, lines = authenticate(idp, policy_db, sign(idp, assertion(name='bob')))
    assert rc == 1 and 'disabled' in lines[0], lines


def test_refused_assertion_is_not_cached(idp, policy_db):
    xml = sign(idp, assertion(name='alice')).replace('>alice<', '>bob<')
    rc, lines = authenticate(idp, policy_db, xml)
    assert rc == 1 and lines == ['refused: SAML signature is invalid'], lines
