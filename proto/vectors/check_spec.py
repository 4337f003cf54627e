#!/usr/bin/env python3
"""Independent check of proto/*.md against proto/vectors/v1.txt.

A second implementation of the v1 formats, written from the specification alone (it shares
no code with src/). It decodes every vector field by field (every varint must be minimal),
verifies every signature, unwraps the sealed key, derives the message key, opens the envelope
and recomputes the derived ids (domain id, peer id and its base58 text, alert id, topic). It
also recomputes the envelope budget and the authentication size limits from their formulas and
checks that the documents print those values. There are no catch-up or store vectors, so
sync.md and storage.md are not checked. Requires the Python 'cryptography' package.
Usage: python3 proto/vectors/check_spec.py
"""
import datetime, hashlib, os, struct
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization

HERE = os.path.dirname(os.path.abspath(__file__))
V = {}
for l in open(os.path.join(HERE, 'v1.txt')):
    l = l.strip()
    if not l or l.startswith('#'): continue
    k, v = l.split('=', 1); V[k.strip()] = bytes.fromhex(v.strip())

class R:
    def __init__(s, b): s.b, s.i = b, 0
    def u8(s): x = s.b[s.i]; s.i += 1; return x
    def raw(s, n): x = s.b[s.i:s.i+n]; assert len(x) == n; s.i += n; return x
    def var(s, nbytes=10):
        # LEB128; the vectors come from an encoder that MUST emit minimal varints (README).
        out, sh, n = 0, 0, 0
        while True:
            c = s.u8(); n += 1; out |= (c & 0x7f) << sh; sh += 7
            assert n <= nbytes, 'varint too long'
            if not c & 0x80:
                assert c != 0 or n == 1, 'non-minimal varint'
                return out
    def bytes_(s): return s.raw(s.var())
    def str_(s): return s.bytes_().decode()
    def bool_(s): x = s.u8(); assert x in (0, 1); return bool(x)
    def f64(s): return struct.unpack('<d', s.raw(8))[0]
    def opt(s, f):
        t = s.u8(); assert t in (0, 1); return f() if t else None
    def vec(s, f): return [f() for _ in range(s.var())]
    def end(s): assert s.i == len(s.b), (s.i, len(s.b))

def pub(sk): return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
def verify(pk, ctx, msg, sig):
    Ed25519PublicKey.from_public_bytes(pk).verify(sig, ctx + b'\x00' + msg)
def hkdf(salt, ikm, info): return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)

auth = Ed25519PrivateKey.from_private_bytes(b'\x11'*32)
dev = Ed25519PrivateKey.from_private_bytes(b'\x22'*32)
devx = X25519PrivateKey.from_private_bytes(b'\x33'*32)
devx_pk = devx.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
apk = pub(auth); assert apk == V['authority_public_key']
did = hashlib.sha256(b'ptt-node/v1/domain-id' + apk).digest(); assert did == V['domain_id']; print('domain id ok')

# descriptor
d = V['descriptor']; body, sig = d[:-64], d[-64:]
r = R(body); ver = r.u8(); name = r.str_(); a = r.raw(32); rev = r.var()
chans = r.vec(lambda: (r.var(), r.str_())); brokers = r.vec(r.str_); r.end()
assert (ver, name, a, rev, chans, brokers) == (1, 'site-a', apk, 2, [(1, 'alerts')], [])
verify(a, b'ptt-node/v1/sig/descriptor', body, sig); print('descriptor ok')

# certificate
def parse_cert(c):
    body, sig = c[:-64], c[-64:]
    verify(apk, b'ptt-node/v1/sig/certificate', body, sig)
    r = R(body)
    cb = dict(version=r.u8(), domain=r.raw(32), device=r.var(), name=r.str_(), ed=r.raw(32), x=r.raw(32),
              relay=r.bool_(), grants=r.vec(lambda: (r.var(), r.str_(), r.bool_(), r.bool_())),
              profile=(r.str_(), r.opt(lambda: (r.f64(), r.f64())), r.vec(lambda: (r.str_(), r.str_())), r.bool_()),
              nb=r.var(), na=r.var())
    r.end(); return cb
cb = parse_cert(V['certificate'])
assert cb['version'] == 1 and cb['domain'] == did and cb['device'] == 7 and cb['name'] == 'cam-7'
assert cb['ed'] == pub(dev) and cb['x'] == devx_pk and not cb['relay']
assert cb['grants'] == [(1, 'alerts', True, True)]
assert cb['profile'] == ('camera', (37.5665, 126.978), [('zone', 'north')], False)
assert (cb['nb'], cb['na']) == (1_790_000_000, 1_821_536_000)
assert V['certificate_peer_id'] == bytes([0, 0x24, 8, 1, 0x12, 0x20]) + pub(dev)
print('certificate ok, peer id ok')

# sealed key
s = V['sealed_key']; body, sig = s[:-64], s[-64:]
verify(apk, b'ptt-node/v1/sig/sealed-key', body, sig)
r = R(body); sv = r.u8(); sd = r.raw(32); ch = r.var(); ep = r.var(); dv = r.var(); E = r.raw(32); w = r.bytes_(); r.end()
assert (sv, sd, ch, ep, dv, len(w)) == (1, did, 1, 1, 7, 48) and len(body) == 117 and len(s) == 181
shared = devx.exchange(X25519PublicKey.from_public_bytes(E))
wk = hkdf(did, shared, b'ptt-node/v1/key-wrap' + E + devx_pk)
secret = AESGCM(wk).decrypt(b'\x00'*12, w, struct.pack('>III', ch, ep, dv))
assert secret == b'\x44'*32; print('sealed key ok')

# alert plaintext
def parse_alert(p):
    r = R(p); a = (r.var(), r.str_(), r.str_(), r.opt(lambda: (r.f64(), r.f64())), r.vec(lambda: (r.str_(), r.str_()))); r.end(); return a
assert parse_alert(V['alert_plaintext']) == (3, 'intrusion', 'gate 3 forced', (37.5665, 126.978), [('door', '3')])
print('alert plaintext ok')

# envelope
e = V['envelope']; body, sig = e[:-64], e[-64:]
r = R(body); hv = r.u8(); tag = r.raw(4); hc = r.var(); he = r.var(); hs = r.var(); seq = r.var(); hlen = r.i
ct = r.bytes_(); r.end()
assert (hv, tag, hc, he, hs, seq) == (1, did[:4], 1, 1, 7, 1_795_000_000_123_456)
verify(pub(dev), b'ptt-node/v1/sig/envelope', did + body, sig)
mk = hkdf(did, secret, b'ptt-node/v1/message-key' + struct.pack('>II', 1, 1))
pt = AESGCM(mk).decrypt(struct.pack('>IQ', hs, seq), ct, did + body[:hlen])
assert pt == V['alert_plaintext']
ov = len(e) - len(pt); print('envelope ok; header', hlen, 'bytes; overhead', ov, 'plaintext', len(pt))
aid = hashlib.sha256(b'ptt-node/v1/alert-id' + did + struct.pack('>IQ', 7, seq)).digest()[:8].hex()
assert aid.encode() == V['alert_id']; print('alert id ok', aid)

# auth: AuthRequest::Hello (variant 0) and AuthReply::Refused (variant 1)
r = R(V['auth_hello']); assert r.var() == 0 and r.raw(32) == did and r.bytes_() == V['certificate']; r.end()
r = R(V['auth_reply_refused']); assert r.var() == 1; reason = r.str_(); r.end()
assert reason == 'belongs to another domain'
# what a receiver keeps (network.md): control characters removed, then cut to 200 characters
assert ''.join(c for c in reason if not (ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0))[:200] == reason
print('auth ok')

# derived values printed in the documents
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def b58(b):
    A = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
    n, out = int.from_bytes(b, 'big'), ''
    while n: n, m = divmod(n, 58); out = A[m] + out
    return '1' * (len(b) - len(b.lstrip(b'\0'))) + out
def doc(name): return open(os.path.join(HERE, '..', name), encoding='utf-8').read()
def grouped(n): return f'{n:,}'.replace(',', ' ')  # the documents write 4 105 124
README, NETWORK, ENVELOPE = doc('README.md'), doc('network.md'), doc('envelope.md')

peer_text = b58(V['certificate_peer_id']); assert peer_text.startswith('12D3KooW'), peer_text
topic = '/ptt/1/%s/%d' % (did.hex()[:16], 1)
assert topic == '/ptt/1/02e8a2fc05d9aeab/1' and topic in NETWORK
assert aid == 'b71606e6e2702418' and aid in README
print('peer id text', peer_text, 'topic', topic, 'ok')

# envelope worked example and overhead budget (envelope.md)
assert body[:hlen].hex() == '01' + '02e8a2fc' + '01' + '01' + '07' + 'c0a4848bb0919803'
assert '01 02e8a2fc 01 01 07 c0a4848bb0919803' in ENVELOPE
t = datetime.datetime.fromtimestamp(seq // 10**6, datetime.timezone.utc)
assert t.strftime('%Y-%m-%dT%H:%M:%S') + '.%06dZ' % (seq % 10**6) == '2026-11-18T11:06:40.123456Z'
assert (hlen, ov) == (16, 97)
assert len(varint(111 + 16)) == 1 and len(varint(112 + 16)) == 2      # "1 if plaintext <= 111"
assert len(varint(16367 + 16)) == 2 and len(varint(16368 + 16)) == 3  # "2 if <= 16 367"
assert len(varint(2**49)) == 8 and len(varint(2**56 - 1)) == 8        # 8-byte seq range
max_header = 1 + 4 + len(varint(2**32 - 1)) * 3 + len(varint(2**64 - 1))
assert (max_header, max_header + 3 + 16 + 64) == (30, 113)
print('envelope budget ok')

# size limits (README.md, network.md)
MAX_ENVELOPE_LEN, MAX_CERT_LEN, MAX_ALERT_LEN = 64 * 1024, 4 * 1024, 16 * 1024
MAX_ROSTER_SHARE, MAX_ROSTER_PUSH = 1000, 64
MAX_AUTH_RESPONSE = (MAX_ROSTER_SHARE + 1) * (MAX_CERT_LEN + 4) + 1024
MAX_AUTH_REQUEST = MAX_ROSTER_PUSH * (MAX_CERT_LEN + 4) + 1024
assert (MAX_AUTH_REQUEST, MAX_AUTH_RESPONSE) == (263_424, 4_105_124)
for d in (README, NETWORK):
    assert grouped(MAX_AUTH_REQUEST) in d and grouped(MAX_AUTH_RESPONSE) in d
assert len(V['certificate']) <= MAX_CERT_LEN and len(e) <= MAX_ENVELOPE_LEN and len(pt) <= MAX_ALERT_LEN
assert len(V['auth_hello']) <= MAX_AUTH_REQUEST and len(V['auth_reply_refused']) <= MAX_AUTH_RESPONSE
# the largest messages a conforming node sends fit the limits
cert_max = len(varint(MAX_CERT_LEN)) + MAX_CERT_LEN
welcome_max = 1 + cert_max + len(varint(MAX_ROSTER_SHARE)) + MAX_ROSTER_SHARE * cert_max
roster_push_max = 1 + len(varint(MAX_ROSTER_PUSH)) + MAX_ROSTER_PUSH * cert_max
hello_max = 1 + 32 + cert_max
assert welcome_max == 4_102_101 and grouped(welcome_max) in NETWORK
assert roster_push_max == 262_274 and grouped(roster_push_max) in NETWORK
assert hello_max == 4_131 and grouped(hello_max) in NETWORK
assert welcome_max <= MAX_AUTH_RESPONSE and roster_push_max <= MAX_AUTH_REQUEST
# network.md: a push of 1 000 certificates of the vector's size fits the request limit
assert 1 + len(varint(1000)) + 1000 * (len(varint(len(V['certificate']))) + len(V['certificate'])) <= MAX_AUTH_REQUEST
# AuthRequest::Roster carrying the vector certificate, and AuthReply::Ack, as network.md encodes them
push = b'\x01' + varint(1) + varint(len(V['certificate'])) + V['certificate']
r = R(push); assert r.var() == 1 and r.vec(r.bytes_) == [V['certificate']]; r.end()
assert bytes([2]) == varint(2)  # Ack: the variant index alone
print('limits ok: MAX_AUTH_REQUEST =', MAX_AUTH_REQUEST, '; MAX_AUTH_RESPONSE =', MAX_AUTH_RESPONSE,
      '; largest push', roster_push_max, '; largest Welcome', welcome_max)
