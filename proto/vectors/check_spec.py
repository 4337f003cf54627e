#!/usr/bin/env python3
"""Independent check of proto/*.md against proto/vectors/v1.txt.

A second implementation of the v1 formats, written from the specification alone (it shares
no code with src/). It decodes every vector field by field (every varint must be minimal),
verifies every signature, unwraps the sealed key, takes one ratchet step, derives the message
key of the envelope's ratchet period, opens the envelope, decodes and checks the domain update
(its descriptor and sealed key must be the `descriptor` and `sealed_key` vectors), opens the
plane's sealed key (`plane_sealed_key`) and recomputes
the derived ids (domain id, peer id and its base58 text, alert id, topic). It also recomputes the
envelope budget, the authentication size limits and the control socket's line limit (with the
largest update a `publish` line holds) from their formulas and checks that the documents print
those values. There are no golden vectors for catch-up,
presence records, device tags, directed messages or the store: the informative examples of
sync.md, presence.md, tag.md and the direct-key example of keys.md are rebuilt from their text
and compared with the bytes the documents print, and the catch-up frame limits are recomputed;
storage.md, broker.md and rules.md are not checked. The plane vectors of plane.md are opened
with an XChaCha20-Poly1305 built here from HChaCha20 (checked against the draft's test vector)
and the package's ChaCha20-Poly1305, sealed again to the same bytes, and the beacon verified. Requires the Python 'cryptography' package.
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

# descriptor (certificate.md): ChannelInfo carries a ChannelPolicy; revoked devices ascending
def parse_descriptor(d):
    body, sig = d[:-64], d[-64:]
    r = R(body); ver = r.u8(); name = r.str_(); a = r.raw(32); rev = r.var()
    ver = body[0]
    if ver == 3:   # id, name, (rate, burst, rotate), (escalate after secs, from severity)
        chans = r.vec(lambda: (r.var(), r.str_(), (r.var(), r.var(), r.var()), (r.var(), r.var())))
    else:          # id, name, (rate, burst, rotate)
        chans = r.vec(lambda: (r.var(), r.str_(), (r.var(), r.var(), r.var())))
    brokers = r.vec(r.str_); revoked = r.vec(r.var); pnet = r.bool_()
    assert ver in (1, 2, 3), 'descriptor version 1 (read as no rights), 2 or 3'
    if ver == 2:
        rights = r.vec(lambda: (r.var(), r.var()))                        # (device, max severity)
    elif ver == 3:
        rights = r.vec(lambda: (r.var(), r.var(), r.var(), r.var()))      # ... flags, watch secs
    else:
        rights = []
    r.end()
    assert len(body) <= 64 * 1024
    assert all(x < y for x, y in zip(revoked, revoked[1:])), 'revoked not strictly ascending'
    assert all(x[0] < y[0] for x, y in zip(rights, rights[1:])), 'rights not strictly ascending'
    assert all(x[1] <= 4 for x in rights), 'severity is 0 (unknown) to 4 (extreme)'
    verify(a, b'ptt-node/v1/sig/descriptor', body, sig)
    return dict(name=name, authority=a, revision=rev, channels=chans, brokers=brokers, revoked=revoked, pnet=pnet,
                rights=rights, version=ver)
desc = parse_descriptor(V['descriptor'])
assert desc == dict(name='site-a', authority=apk, revision=3, channels=[(1, 'alerts', (3000, 500, 3600))],
                    brokers=[], revoked=[3], pnet=False, rights=[], version=1)
desc2 = parse_descriptor(V['descriptor_v2'])
assert desc2 == dict(desc, revision=4, rights=[(7, 3)], version=2)   # device 7: at most severe

desc3 = parse_descriptor(V['descriptor_v3'])
assert desc3 == dict(desc, revision=5, rights=[(7, 3, 1, 60)], version=3,   # + dispatcher, watched 60 s
                     channels=[(1, 'alerts', (3000, 500, 3600), (120, 3))])   # severe escalated after 120 s

print('descriptor ok (version 1, version 2 with rights, version 3 with flags and watch)')

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

# sealed key (keys.md): rotate_secs and period after device; the wrap AAD is 24 bytes
s = V['sealed_key']; body, sig = s[:-64], s[-64:]
verify(apk, b'ptt-node/v1/sig/sealed-key', body, sig)
r = R(body); sv = r.u8(); sd = r.raw(32); ch = r.var(); ep = r.var(); dv = r.var(); rot = r.var(); per = r.var()
E = r.raw(32); w = r.bytes_(); r.end()
assert (sv, sd, ch, ep, dv, rot, per, len(w)) == (1, did, 1, 1, 7, 3600, 498_611, 48)
assert len(body) == 122 and len(s) == 186 and len(body) <= 1024
shared = devx.exchange(X25519PublicKey.from_public_bytes(E))
wk = hkdf(did, shared, b'ptt-node/v1/key-wrap' + E + devx_pk)
wrap_aad = struct.pack('>IIIIQ', ch, ep, dv, rot, per); assert len(wrap_aad) == 24
secret = AESGCM(wk).decrypt(b'\x00'*12, w, wrap_aad)
assert secret == b'\x44'*32; print('sealed key ok: chain (rotate_secs %d, period %d)' % (rot, per))
# the AAD binds rotate_secs and period: the same wrap does not open with another period
try:
    AESGCM(wk).decrypt(b'\x00'*12, w, struct.pack('>IIIIQ', ch, ep, dv, rot, per + 1)); assert False
except Exception as x:
    assert type(x).__name__ == 'InvalidTag'

# plane sealed key (keys.md, Plane epochs): the sealed-key format under the pseudo-channel 2^32 - 2,
# epoch 1, rotate_secs 0, period 0, secret 66x32, sealed to device 7
s = V['plane_sealed_key']; body, sig = s[:-64], s[-64:]
verify(apk, b'ptt-node/v1/sig/sealed-key', body, sig)
r = R(body); pf = (r.u8(), r.raw(32), r.var(), r.var(), r.var(), r.var(), r.var()); pE = r.raw(32); pw = r.bytes_(); r.end()
assert pf == (1, did, 2**32 - 2, 1, 7, 0, 0) and len(pw) == 48
assert len(body) == 123 and len(s) == 187
pwk = hkdf(did, devx.exchange(X25519PublicKey.from_public_bytes(pE)), b'ptt-node/v1/key-wrap' + pE + devx_pk)
assert AESGCM(pwk).decrypt(b'\x00'*12, pw, struct.pack('>IIIIQ', *pf[2:])) == b'\x66'*32
# the AAD binds the channel number: the plane secret never opens as a key of channel 1
try:
    AESGCM(pwk).decrypt(b'\x00'*12, pw, struct.pack('>IIIIQ', 1, *pf[3:])); assert False
except Exception as x:
    assert type(x).__name__ == 'InvalidTag'
print('plane sealed key ok: epoch 1, %d bytes' % len(s))

# ratchet (keys.md): next period's secret = HKDF-SHA256(salt none, ikm secret, info "ptt-node/v1/ratchet")
def ratchet(sec): return hkdf(None, sec, b'ptt-node/v1/ratchet')
assert ratchet(secret) == V['ratchet_next'] and hkdf(b'\x00'*32, secret, b'ptt-node/v1/ratchet') == V['ratchet_next']
def period_of(rotate_secs, seq_us): return 0 if rotate_secs == 0 else seq_us // 1_000_000 // rotate_secs
print('ratchet ok')

# alert plaintext
def parse_alert(p):
    r = R(p); a = (r.var(), r.str_(), r.str_(), r.opt(lambda: (r.f64(), r.f64())), r.vec(lambda: (r.str_(), r.str_()))); r.end(); return a
assert parse_alert(V['alert_plaintext']) == (3, 'intrusion', 'gate 3 forced', (37.5665, 126.978), [('door', '3')])
# a cancellation: the alert fields, then the reference (enum tag 1 = cancel, sender, seq)
r = R(V['alert_cancel_plaintext'])
fields = (r.var(), r.str_(), r.str_(), r.opt(lambda: (r.f64(), r.f64())), r.vec(lambda: (r.str_(), r.str_())))
ref = (r.var(), r.var(), r.var()); r.end()
assert fields == (1, 'cancel', 'false alarm', None, []) and ref == (1, 7, 1_795_000_000_123_456)
print('alert plaintext ok (and a cancellation)')

# receipt plaintext (receipts.md): runs of (sender, [(seq delta, ms after the seq, via)]), then
# acks of (sender, seq, text); senders strictly ascending, the first delta of a run is the seq
r = R(V['receipt_plaintext'])
runs = r.vec(lambda: (r.var(), r.vec(lambda: (r.var(), r.var(), r.var()))))
acks = r.vec(lambda: (r.var(), r.var(), r.str_())); r.end()
opened = []
for sender, ids in runs:
    seq = 0
    for delta, ms, via in ids:
        seq += delta; opened.append((sender, seq, ms, via))
S = 1_795_000_000_123_456
assert [x[0] for x in runs] == sorted({x[0] for x in runs})
assert opened == [(7, S, 40, 0), (7, S + 1000, 3, 3), (9, S + 500, 2000, 1)], opened
assert acks == [(7, S, 'handled')]
print('receipt plaintext ok:', len(V['receipt_plaintext']), 'bytes for 3 alerts and an ack')

# envelope
e = V['envelope']; body, sig = e[:-64], e[-64:]
r = R(body); hv = r.u8(); tag = r.raw(4); hc = r.var(); he = r.var(); hs = r.var(); seq = r.var(); hlen = r.i
ct = r.bytes_(); r.end()
assert (hv, tag, hc, he, hs, seq) == (1, did[:4], 1, 1, 7, 1_795_000_000_123_456)
verify(pub(dev), b'ptt-node/v1/sig/envelope', did + body, sig)
assert period_of(rot, seq) == per == 498_611 and period_of(0, seq) == 0   # the chain was sealed at this period
mk = hkdf(did, secret, b'ptt-node/v1/message-key' + struct.pack('>IIQ', hc, he, per))
pt = AESGCM(mk).decrypt(struct.pack('>IQ', hs, seq), ct, did + body[:hlen])
assert pt == V['alert_plaintext']
# a key of another period (here the next one, from ratchet_next) does not open it
mk_next = hkdf(did, V['ratchet_next'], b'ptt-node/v1/message-key' + struct.pack('>IIQ', hc, he, per + 1))
try:
    AESGCM(mk_next).decrypt(struct.pack('>IQ', hs, seq), ct, did + body[:hlen]); assert False
except Exception as x:
    assert type(x).__name__ == 'InvalidTag'
ov = len(e) - len(pt); print('envelope ok; header', hlen, 'bytes; overhead', ov, 'plaintext', len(pt))
aid = hashlib.sha256(b'ptt-node/v1/alert-id' + did + struct.pack('>IQ', 7, seq)).digest()[:8].hex()
assert aid.encode() == V['alert_id']; print('alert id ok', aid)

# domain update (update.md): body ‖ signature, checked in the order of update.md
MAX_UPDATE_LEN = 1024 * 1024
def check_update(u, authority, domain):
    assert len(u) <= MAX_UPDATE_LEN                                          # 1 TooLong
    assert len(u) >= 64; body, sig = u[:-64], u[-64:]                         # 2 Malformed
    verify(authority, b'ptt-node/v1/sig/update', body, sig)                  # 3 BadSignature
    r = R(body)                                                              # 4 decode, no trailing bytes
    ub = dict(version=r.u8(), domain=r.raw(32), serial=r.var(), requires=r.var(), issued_at=r.var(), note=r.str_(),
              descriptor=r.bytes_(), revoked=r.vec(r.var), certs=r.vec(r.bytes_), keys=r.vec(r.bytes_))
    r.end()
    assert ub['version'] == 1                                                # 5 Version
    assert ub['domain'] == domain                                            # 6 WrongDomain
    d = parse_descriptor(ub['descriptor'])                                   # 7 the descriptor verifies
    assert d['authority'] == authority                                       # 8 by this authority
    assert ub['requires'] < ub['serial']                                     # 9 requires an earlier revision
    assert d['revision'] == ub['serial']                                     # 10 at revision = serial
    assert all(x in d['revoked'] for x in ub['revoked'])                     # 11 it lists every device revoked
    return ub, d
ub, ud = check_update(V['update'], apk, did)
assert ub['serial'] == 3 and ub['requires'] == 0 and ub['issued_at'] == 1_795_000_000 and ub['note'] == 'revoke cam-3 (device 3)'
assert ub['descriptor'] == V['descriptor'] and ud == desc
assert ub['revoked'] == [3] and ub['certs'] == [] and ub['keys'] == [V['sealed_key']]
assert len(V['descriptor']) == 124 and len(V['update']) == 1 + 32 + 1 + 1 + 5 + 1 + 23 + 1 + 124 + 2 + 1 + 1 + 2 + 186 + 64 == 445
# every byte matters: a flipped bit anywhere breaks the signature (or the length before it)
for i in (0, 40, len(V['update']) // 2, len(V['update']) - 65, len(V['update']) - 1):
    t = bytearray(V['update']); t[i] ^= 0x20
    try: check_update(bytes(t), apk, did); refused = False
    except Exception: refused = True
    assert refused, i
print('update ok: serial', ub['serial'], 'revokes', ub['revoked'], 'with', len(ub['keys']), 'sealed key,', len(V['update']), 'bytes')

# auth: AuthRequest::Hello (variant 0) and AuthReply::Refused (variant 1)
r = R(V['auth_hello']); assert r.var() == 0 and r.raw(32) == did and r.bytes_() == V['certificate']
assert r.var() == 1; r.end()   # revision: the bundle-era descriptor revision the sender holds
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
# /ptt-node/auth/2 (hellos, read from anyone) and /ptt-node/push/1 (members only)
MAX_HELLO_REQUEST = MAX_CERT_LEN + 128
MAX_HELLO_RESPONSE = MAX_CERT_LEN + 1024
MAX_PUSH_REQUEST = (MAX_ROSTER_SHARE + 1) * (MAX_CERT_LEN + 4) + 1024
MAX_PUSH_RESPONSE = 1024
assert (MAX_HELLO_REQUEST, MAX_HELLO_RESPONSE, MAX_PUSH_REQUEST, MAX_PUSH_RESPONSE) == (4_224, 5_120, 4_105_124, 1_024)
for d in (README, NETWORK):
    for n in (MAX_HELLO_REQUEST, MAX_HELLO_RESPONSE, MAX_PUSH_REQUEST, MAX_PUSH_RESPONSE):
        assert grouped(n) in d, (n, d[:40])
assert len(V['certificate']) <= MAX_CERT_LEN and len(e) <= MAX_ENVELOPE_LEN and len(pt) <= MAX_ALERT_LEN
assert len(V['auth_hello']) <= MAX_HELLO_REQUEST and len(V['auth_reply_refused']) <= MAX_HELLO_RESPONSE
# the largest messages a conforming node sends fit the limits
cert_max = len(varint(MAX_CERT_LEN)) + MAX_CERT_LEN
welcome_max = 1 + cert_max + len(varint(0))                                   # the roster is empty on auth/2
roster_share_max = 1 + len(varint(MAX_ROSTER_SHARE)) + MAX_ROSTER_SHARE * cert_max
roster_push_max = 1 + len(varint(MAX_ROSTER_PUSH)) + MAX_ROSTER_PUSH * cert_max
hello_max = 1 + 32 + cert_max + len(varint(2**64 - 1))
update_push_max = 1 + len(varint(MAX_UPDATE_LEN)) + MAX_UPDATE_LEN          # AuthRequest::Update (variant 3)
assert welcome_max == 4_100 and grouped(welcome_max) in NETWORK
assert roster_share_max == 4_098_003 and grouped(roster_share_max) in NETWORK
assert roster_push_max == 262_274 and grouped(roster_push_max) in NETWORK
assert hello_max == 4_141 and grouped(hello_max) in NETWORK
assert update_push_max == 1_048_580 and grouped(update_push_max) in NETWORK
assert hello_max <= MAX_HELLO_REQUEST and welcome_max <= MAX_HELLO_RESPONSE
assert max(roster_share_max, roster_push_max, update_push_max) <= MAX_PUSH_REQUEST
# a hello frame cannot hold a roster push of even two certificates of the largest size
assert 1 + 1 + 2 * cert_max > MAX_HELLO_REQUEST
assert grouped(MAX_UPDATE_LEN) in README and grouped(MAX_UPDATE_LEN) in doc('update.md')
# control socket (control.md): one line holds a publish request of the largest update in hex
MAX_LINE = 2 * MAX_UPDATE_LEN + 64 * 1024
publish_overhead = len('{"op":"publish","update":"') + len('"}') + len('\n')
publish_max = (MAX_LINE - publish_overhead) // 2
assert (MAX_LINE, publish_overhead, publish_max) == (2_162_688, 29, 1_081_329)
assert publish_max >= MAX_UPDATE_LEN                         # MAX_UPDATE_LEN binds, not the line
CONTROL = doc('control.md')
for d in (README, CONTROL, doc('update.md')):
    assert grouped(MAX_LINE) in d and grouped(publish_max) in d
assert len(V['update']) <= MAX_UPDATE_LEN
# AuthRequest::Update carrying the update vector
upush = varint(3) + varint(len(V['update'])) + V['update']
r = R(upush); assert r.var() == 3 and r.bytes_() == V['update']; r.end()
assert upush[:3].hex() == '03bd03' and '03 bd03' in NETWORK
# network.md: a roster share of 1 000 certificates of the vector's size fits the push limit
assert 1 + len(varint(1000)) + 1000 * (len(varint(len(V['certificate']))) + len(V['certificate'])) <= MAX_PUSH_REQUEST
# AuthRequest::Roster carrying the vector certificate, and AuthReply::Ack, as network.md encodes them
push = b'\x01' + varint(1) + varint(len(V['certificate'])) + V['certificate']
r = R(push); assert r.var() == 1 and r.vec(r.bytes_) == [V['certificate']]; r.end()
assert bytes([2]) == varint(2)  # Ack: the variant index alone
print('limits ok: MAX_HELLO_REQUEST =', MAX_HELLO_REQUEST, '; MAX_HELLO_RESPONSE =', MAX_HELLO_RESPONSE,
      '; MAX_PUSH_REQUEST =', MAX_PUSH_REQUEST, '; largest roster share', roster_share_max,
      '; largest roster push', roster_push_max, '; largest update push', update_push_max, '; largest Welcome', welcome_max,
      '; MAX_LINE =', MAX_LINE, '; largest update a publish line holds', publish_max)

# ---------------------------------------------------------------------------------------------
# catch-up (sync.md): fingerprint worked example, encoded messages, frame limits. No golden
# vectors exist for these: the documents' bytes are rebuilt from their own text.
import re
SYNC, PRESENCE, TAG = doc('sync.md'), doc('presence.md'), doc('tag.md')
def compact(d):  # every `…` span of a document, without spaces
    return {m.replace(' ', '') for m in re.findall(r'`([^`\n]+)`', d)}
SYNC_SPANS = compact(SYNC)
ch, sender = 1, 7
h = hashlib.sha256(b'ptt-node/v1/sync-fingerprint' + struct.pack('>IQ', sender, seq)).digest()
fp = int.from_bytes(h[:8], 'big')
assert h.hex() == 'ce43c609481051db4e36199c37cd0caa4857da34f1d8f7ee7fbfef9ae1cabda7'
assert 'ce43c609481051db 4e36199c37cd0caa4857da34f1d8f7ee7fbfef9ae1cabda7' in SYNC
assert grouped(fp) in SYNC and grouped(seq >> 30) in SYNC
bucket = min(seq >> 30, 2**32 - 1)
cutoff = seq - 86_400_000_000
assert grouped(cutoff) in SYNC
summary = varint(ch) + varint(sender) + varint(bucket) + varint(1) + varint(fp)   # BucketSummary
key = varint(ch) + varint(sender) + varint(seq)                                   # (channel, sender, seq)
carried = [0, ch]   # channel 0 (directed messages, every member's) first, then the grants
chans = varint(len(carried)) + b''.join(varint(c) for c in carried)
examples = {   # the first column of sync.md's table, with its byte count
    '`Digest`, first round': b'\x00' + varint(cutoff) + chans + b'\x00' + varint(1) + summary,
    '`Digest`, a later round': b'\x00' + varint(cutoff) + chans + b'\x01' + key + varint(1) + summary,
    '`Fetch`': b'\x01' + varint(1) + varint(sender) + varint(seq),
    '`Diff`': b'\x00' + varint(1) + key + b'\x00',
    'empty `Diff`': b'\x00\x00\x00',
    '`Refused`': b'\x02' + varint(17) + b'not authenticated',
}
for name, m in examples.items():
    assert m.hex() in SYNC_SPANS, (name, m.hex())
    assert '| %s (%d bytes) |' % (name, len(m)) in SYNC, name
examples = {k.replace('`', ''): v for k, v in examples.items()}
assert '`%08x` before the %d-byte digest' % (len(examples['Digest, first round']),
                                             len(examples['Digest, first round'])) in SYNC
# the same bytes decoded field by field as the tables say
r = R(examples['Digest, a later round']); assert r.var() == 0 and r.var() == cutoff
assert r.vec(r.var) == [0, 1] and r.opt(lambda: (r.var(), r.var(), r.var())) == (1, 7, seq)
assert r.vec(lambda: (r.var(), r.var(), r.var(), r.var(), r.var())) == [(1, 7, bucket, 1, fp)]; r.end()
r = R(examples['Diff']); assert r.var() == 0 and r.vec(lambda: (r.var(), r.var(), r.var())) == [(1, 7, seq)]
assert r.bool_() is False; r.end()
# limits
MAX_DIGEST_BUCKETS, MAX_DIFF_IDS, MAX_FETCH_IDS, SYNC_FETCH_BYTES = 4096, 8192, 256, 1024 * 1024
MAX_SYNC_REQUEST = MAX_DIGEST_BUCKETS * 30 + 1024
MAX_SYNC_RESPONSE = SYNC_FETCH_BYTES + MAX_ENVELOPE_LEN + 64 * 1024 + 8192 * 16
assert (MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE) == (123_904, 1_310_720)
for d in (README, SYNC):
    assert grouped(MAX_SYNC_REQUEST) in d and grouped(MAX_SYNC_RESPONSE) in d
summary_max = 5 + 5 + 5 + 5 + 10
assert len(varint(2**32 - 1)) == 5 and len(varint(2**64 - 1)) == 10
digest_fixed = 1 + 10 + (1 + 5 + 5 + 10) + len(varint(MAX_DIGEST_BUCKETS))   # variant, cutoff, after, count
assert digest_fixed == 34 and 1024 - digest_fixed == 990 and '990 bytes' in SYNC
today = 1 + 2 + len(varint((2**51 - 1) >> 30)) + 2 + 10   # channel < 128, sender, count < 16 384
assert today == 18 and MAX_DIGEST_BUCKETS * today + digest_fixed == 73_762
assert MAX_SYNC_REQUEST - 73_762 == 50_142 and '73 762' in SYNC and '50 142' in SYNC
diff_max = 1 + len(varint(MAX_DIFF_IDS)) + MAX_DIFF_IDS * (5 + 5 + 10) + 1
envelopes_max = 1 + len(varint(MAX_FETCH_IDS)) + MAX_FETCH_IDS * 3 + SYNC_FETCH_BYTES
assert (diff_max, envelopes_max) == (163_844, 1_049_347)
assert grouped(diff_max) in SYNC and grouped(envelopes_max) in SYNC
assert diff_max <= MAX_SYNC_RESPONSE and envelopes_max <= MAX_SYNC_RESPONSE
print('sync examples ok; MAX_SYNC_REQUEST =', MAX_SYNC_REQUEST, '; largest Diff', diff_max)

# ---------------------------------------------------------------------------------------------
# presence record (presence.md): rebuilt, signed with the device seed, compared with the text
address = '/ip4/192.168.1.7/tcp/4001'
pbody = (b'\x01' + did + varint(7) + varint(seq) + varint(1) + varint(len(address)) + address.encode()
         + b'\x00')
psig = dev.sign(b'ptt-node/v1/sig/presence\x00' + pbody)     # Ed25519 is deterministic
record = pbody + psig
verify(pub(dev), b'ptt-node/v1/sig/presence', pbody, psig)
r = R(pbody)
assert (r.u8(), r.raw(32), r.var(), r.var(), r.vec(r.str_)) == (1, did, 7, seq, [address])
assert r.opt(lambda: None) is None; r.end()
assert '01 %02x %s' % (len(address), address.encode().hex()) in PRESENCE
assert did.hex() in PRESENCE and varint(seq).hex() in PRESENCE
assert psig.hex()[:64] in PRESENCE and psig.hex()[64:] in PRESENCE
assert (len(pbody), len(record)) == (70, 134)
assert 'body (70 bytes)' in PRESENCE and '(134 bytes)' in PRESENCE
push = b'\x02' + varint(1) + varint(len(record)) + record
assert push[:4].hex() == '02018601' and '02 01 8601' in PRESENCE and '138 bytes' in PRESENCE
MAX_PRESENCE_LEN = 4096
presence_push_max = 1 + len(varint(MAX_ROSTER_PUSH)) + MAX_ROSTER_PUSH * (len(varint(MAX_PRESENCE_LEN)) + MAX_PRESENCE_LEN)
assert presence_push_max == roster_push_max <= MAX_PUSH_REQUEST and grouped(presence_push_max) in PRESENCE
print('presence example ok; record', len(record), 'bytes')

# ---------------------------------------------------------------------------------------------
# device tag (tag.md): written with NON_ALPHANUMERIC percent-encoding, read back by the rules
def pct(s):
    return ''.join(chr(c) if chr(c).isascii() and chr(c).isalnum() else '%%%02X' % c for c in s.encode())
cert_fp = hashlib.sha256(V['certificate']).hexdigest()
uri = 'ptt://1/%s/%s?fp=%s&n=%s&a=%s' % (did.hex(), peer_text, cert_fp, pct('cam-7'), pct(address))
assert uri in TAG and '(%d bytes, one line)' % len(uri) in TAG and len(uri) <= 2048
assert '`-` → `%2D`' in TAG and '`é` → `%C3%A9`' in TAG and pct('é') == '%C3%A9'
def unpct(v):  # "%" and two hex digits give a byte; any other "%" stays; then UTF-8
    out, i, b = bytearray(), 0, v.encode()
    while i < len(b):
        if b[i:i+1] == b'%' and len(b[i+1:i+3]) == 2 and all(chr(x) in '0123456789abcdefABCDEF' for x in b[i+1:i+3]):
            out.append(int(b[i+1:i+3], 16)); i += 3
        else:
            out.append(b[i]); i += 1
    return out.decode('utf-8')
assert unpct('%2Fa%zz%4') == '/a%zz%4' and unpct('a+b') == 'a+b'
def parse_tag(t):
    t = t.strip(); assert len(t.encode()) <= 2048 and t.startswith('ptt://1/')
    path, query = t[len('ptt://1/'):].split('?', 1)
    dom, peer = path.split('/', 1)
    dom_b = bytes.fromhex(dom); assert len(dom_b) == 32
    out = dict(domain=dom_b, peer=peer, fp=None, n=None, a=[])
    for kv in query.split('&'):
        k, v = kv.split('=', 1); v = unpct(v)
        if k == 'fp': f = bytes.fromhex(v); assert len(f) == 32; out['fp'] = f
        elif k == 'n': out['n'] = v
        elif k == 'a' and len(out['a']) < 16: out['a'].append(v)
    assert out['fp'] is not None
    return out
t = parse_tag(uri)
assert (t['domain'], t['peer'], t['fp'].hex(), t['n'], t['a']) == (did, peer_text, cert_fp, 'cam-7', [address])
print('tag example ok:', len(uri), 'bytes')

# ---------------------------------------------------------------------------------------------
# direct key (keys.md) and a directed envelope (envelope.md). NOT a golden vector: device 7 is the
# vector device (X25519 secret 33x32); device 9 and its secret 55x32 are made up for the example.
KEYS = doc('keys.md')
devx9 = X25519PrivateKey.from_private_bytes(b'\x55'*32)
devx9_pk = devx9.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
shared7 = devx.exchange(X25519PublicKey.from_public_bytes(devx9_pk))    # what device 7 computes
shared9 = devx9.exchange(X25519PublicKey.from_public_bytes(devx_pk))    # what device 9 computes
assert shared7 == shared9
def direct_key(shared, sender, recipient):
    return hkdf(did, shared, b'ptt-node/v1/direct-key' + struct.pack('>II', sender, recipient))
k79, k97 = direct_key(shared7, 7, 9), direct_key(shared9, 9, 7)
assert k79 == direct_key(shared9, 7, 9) and k79 != k97
info = b'ptt-node/v1/direct-key' + struct.pack('>II', 7, 9)
assert len(info) == 30 and '30 bytes in all' in KEYS
for label, b in (('domain id', did), ('device 7 X25519 pk', devx_pk), ('device 9 X25519 pk', devx9_pk),
                 ('shared', shared7), ('direct_key(7 → 9)', k79), ('direct_key(9 → 7)', k97)):
    assert re.search(r'^%s\s+%s' % (re.escape(label), b.hex()), KEYS, re.M), label
assert '%s %s %s' % (info[:-8].hex(), info[-8:-4].hex(), info[-4:].hex()) in KEYS
# a directed envelope: channel 0, epoch = recipient 9, sender 7, the vector's seq and plaintext
dhdr = b'\x01' + did[:4] + varint(0) + varint(9) + varint(7) + varint(seq)
dct = AESGCM(k79).encrypt(struct.pack('>IQ', 7, seq), pt, did + dhdr)
dbody = dhdr + varint(len(dct)) + dct
denv = dbody + dev.sign(b'ptt-node/v1/sig/envelope\x00' + did + dbody)
verify(pub(dev), b'ptt-node/v1/sig/envelope', did + dbody, denv[-64:])
# the recipient opens it with its own secret and the sender's public key
assert AESGCM(direct_key(shared9, 7, 9)).decrypt(struct.pack('>IQ', 7, seq), dct, did + dhdr) == pt
assert dhdr.hex() in KEYS and '01 02e8a2fc 00 09 07 c0a4848bb0919803' in ENVELOPE
assert dct[-16:].hex() in KEYS and ('a ciphertext of %d bytes' % len(dct)) in KEYS.replace('\n', ' ')
assert ('an envelope of %d bytes' % len(denv)) in KEYS.replace('\n', ' ')
assert len(pt) == 50 and '(50 bytes)' in KEYS and len(denv) - len(pt) == 97
print('direct key example ok (not a golden vector):', k79.hex()[:16] + '…; directed envelope', len(denv), 'bytes')

# ---------------------------------------------------------------------------------------------
# the multicast data plane (plane.md): plane key, group and port, datagrams, tail, beacon.
# XChaCha20-Poly1305 is built from HChaCha20 (draft-irtf-cfrg-xchacha-03, section 2.2) and the
# package's ChaCha20-Poly1305 (RFC 8439) with the subkey and nonce 00000000 ‖ nonce[16..24].
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
PLANE = doc('plane.md')
M32 = 0xffffffff
def _rotl(v, c): return ((v << c) & M32) | (v >> (32 - c))
def _qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & M32; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & M32; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32; s[b] = _rotl(s[b] ^ s[c], 7)
def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] + list(struct.unpack('<8I', key)) \
        + list(struct.unpack('<4I', nonce16))
    for _ in range(10):  # 20 rounds: a column round and a diagonal round each time
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    return struct.pack('<8I', *(s[0:4] + s[12:16]))
# the draft's HChaCha20 test vector (section 2.2.1)
assert hchacha20(bytes(range(32)), bytes.fromhex('000000090000004a0000000031415927')).hex() == \
    '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc'
def xchacha(key, nonce24): return ChaCha20Poly1305(hchacha20(key, nonce24[:16])), b'\0' * 4 + nonce24[16:]

# key: HKDF-SHA256(salt = domain id, ikm = secret, info = label ‖ u32be(epoch))
pinfo = b'ptt-node/v1/plane-key' + struct.pack('>I', 1)
assert len(pinfo) == 25 and '25 bytes' in PLANE
pkey = hkdf(did, b'\x66' * 32, pinfo); assert pkey == V['plane_key']

# group and port
h = hashlib.sha256(b'ptt-node/v1/plane-group' + did).digest()
v4 = bytes([239, 255, h[0], h[1]])
if v4 == bytes([239, 255, 255, 250]): v4 = bytes([239, 255, h[2], h[3]])
if v4 == bytes([239, 255, 255, 250]): v4 = bytes([239, 255, 255, 251])
v6 = bytes([0xff, 0x12]) + bytes(10) + h[2:6]
port = 20000 + int.from_bytes(h[6:8], 'big') % 10000
assert V['plane_group'] == v4 + v6 + struct.pack('>H', port)
import ipaddress
v4s, v6s = str(ipaddress.IPv4Address(v4)), str(ipaddress.IPv6Address(v6))
assert v4s in PLANE and v6s in PLANE and str(port) in PLANE, (v4s, v6s, port)

# limits: a u32 varint takes at most 5 bytes
CLEAR, NONCE, TAG, MAXDG = 2, 24, 16, 1200
assert len(varint(2**32 - 1)) == 5
MIN_DG = CLEAR + NONCE + 1 + 1 + 1 + TAG
MAX_OVERHEAD = CLEAR + NONCE + 1 + 5 + 5 + TAG
MAX_BODY = MAXDG - MAX_OVERHEAD
assert (MIN_DG, MAX_OVERHEAD, MAX_BODY) == (45, 53, 1147)
for n in (MIN_DG, MAX_OVERHEAD, MAX_BODY, MAXDG):
    assert grouped(n) in PLANE, n
assert grouped(MAX_BODY) in README and grouped(MAXDG) in README

def plane_open(d, key, domain):
    """The receive order of plane.md, steps 1 to 4, for one held key."""
    assert MIN_DG <= len(d) <= MAXDG and d[0] == 1
    clear, nonce, ct = d[:2], d[2:26], d[26:]
    aad = b'ptt-node/v1/plane' + domain + clear
    assert len(aad) == 51
    c, n = xchacha(key, nonce)
    inner = c.decrypt(n, ct, aad)
    r = R(inner); kind = r.u8(); assert kind in (1, 2, 3, 4)
    sender = r.var(5); pseq = r.var(5); assert sender < 2**32 and pseq < 2**32
    body = inner[r.i:]; assert len(body) <= MAX_BODY
    if kind == 3: assert body == b''
    return clear, nonce, kind, sender, pseq, body

def plane_seal(key, epoch, domain, prefix, counter, kind, sender, pseq, body):
    clear = bytes([1, epoch % 256]); nonce = prefix + struct.pack('>Q', counter)
    c, n = xchacha(key, nonce)
    return clear + nonce + c.encrypt(n, bytes([kind]) + varint(sender) + varint(pseq) + body,
                                     b'ptt-node/v1/plane' + domain + clear)

prefix = b'\x77' * 16
for name, counter, kind in (('plane_datagram', 1, 1), ('plane_tail', 2, 3), ('plane_beacon', 3, 4)):
    d = V[name]
    clear, nonce, k, sender, pseq, body = plane_open(d, pkey, did)
    assert (clear, nonce, k, sender, pseq) == (b'\x01\x01', prefix + struct.pack('>Q', counter), kind, 7, 1), name
    # sealing again from the text gives the same bytes (the nonce is the only varying input)
    assert plane_seal(pkey, 1, did, prefix, counter, kind, 7, 1, body) == d, name
    # any other domain id, epoch key or changed byte fails the AEAD
    for bad in (lambda: plane_open(d, pkey, b'\x00' * 32),
                lambda: plane_open(d, hkdf(did, b'\x66' * 32, b'ptt-node/v1/plane-key' + struct.pack('>I', 2)), did),
                lambda: plane_open(d[:1] + b'\x02' + d[2:], pkey, did),
                lambda: plane_open(d[:-1] + bytes([d[-1] ^ 1]), pkey, did)):
        try: bad()
        except Exception: continue  # InvalidTag from the AEAD
        raise SystemExit('%s opened when it must not' % name)
    if k == 1:
        assert body == V['envelope'], 'the envelope inside is the envelope vector, byte for byte'
        assert len(d) == len(V['envelope']) + 2 + 24 + 1 + 1 + 1 + 16
        assert ('%d bytes' % len(d)) in PLANE
        dg_len = len(d)
    if k == 3:
        assert len(d) == MIN_DG
    if k == 4:
        r = R(body); issued = r.var(10); heard = r.var(5); sig = r.raw(64); r.end()
        assert (issued, heard) == (1_795_000_001_000_000, 2)
        msg = did + struct.pack('>IIQI', sender, pseq, issued, heard)
        assert len(msg) == 52
        verify(pub(dev), b'ptt-node/v1/sig/beacon', msg, sig)
        assert ('%d bytes' % len(d)) in PLANE
        beacon_len = len(d)
hdr = V['plane_datagram'][:26].hex()
assert '%s %s %s' % (hdr[:4], hdr[4:36], hdr[36:52]) in PLANE
print('plane ok: key', pkey.hex()[:16] + '…; group', v4s, v6s, 'port', port, '; datagram', dg_len,
      'bytes, tail', MIN_DG, ', beacon', beacon_len, '; PLANE_MAX_BODY =', MAX_BODY)
