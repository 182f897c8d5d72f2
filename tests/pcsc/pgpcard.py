#!/usr/bin/python3
"""A small OpenPGP card (v2.1, RSA) for vpcd, enough for OpenSC's openpgp driver.

Debian 12's vicc has no card type that OpenSC's PKCS #11 module binds as a
token, so this speaks vpcd's protocol itself (the same one vicc speaks: each
message is a 2-byte big-endian length and a payload; a 1-byte payload is a
control code: 0 power off, 1 power on, 2 reset, 4 get ATR; anything else is a
command APDU, answered with a response APDU).

Supported: SELECT of the OpenPGP AID, GET DATA / PUT DATA of the data objects,
VERIFY / CHANGE REFERENCE DATA (PW1 123456, PW3 12345678), GENERATE ASYMMETRIC
KEY PAIR, key import (PUT DATA 3FFF), PSO:COMPUTE DIGITAL SIGNATURE, PSO:DECIPHER,
INTERNAL AUTHENTICATE, GET RESPONSE; short and extended APDUs, command chaining.
State (keys, data objects, PINs) persists in the --state JSON file, so a card
that is removed and inserted again keeps its keys. Only /usr/bin/python3 and
python3-pycryptodome (Cryptodome) are needed. Test use only: keys are in clear.

usage: pgpcard.py [--host 127.0.0.1] [--port 35963] [--state FILE] [-v]
"""
import argparse
import json
import os
import secrets
import signal
import socket
import struct
import sys
import time

from Cryptodome.PublicKey import RSA

# Historical bytes 73 C0 01 80: command chaining, no extended Lc/Le. With
# extended APDUs OpenSC 0.23 asks GENERATE for Le = min(card, reader) max
# receive size, and a vpcd reader is "short APDUs only" (256): the 270-byte
# public key would be cut. Short APDUs + chaining + GET RESPONSE avoid that.
ATR = bytes.fromhex("3bda18ff81b1fe751f030031c573c00180009000cc")
HIST = bytes.fromhex("0031c573c001800090")
AID_PREFIX = bytes.fromhex("d27600012401")
KEY_CRT = {0xB6: 1, 0xB8: 2, 0xA4: 3}  # sig, dec, aut -> key slot
SW_OK = b"\x90\x00"


class SwError(Exception):
    def __init__(self, sw):
        super().__init__("%04X" % sw)
        self.sw = sw


def tlv(tag, value):
    t = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    if n < 0x80:
        ln = bytes([n])
    elif n < 0x100:
        ln = bytes([0x81, n])
    else:
        ln = bytes([0x82]) + n.to_bytes(2, "big")
    return t + ln + value


def parse_tlv(data):
    """Yield (tag, value) of a BER-TLV sequence (1- or 2-byte tags)."""
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            tag = (tag << 8) | data[i]
            i += 1
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        yield tag, data[i:i + n]
        i += n


def parse_header_list(data):
    """Yield (tag, length) of a DOL (tags and lengths, no values)."""
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            tag = (tag << 8) | data[i]
            i += 1
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        yield tag, n


def i2b(x, n=None):
    return x.to_bytes(n or max(1, (x.bit_length() + 7) // 8), "big")


class Card:
    def __init__(self, path):
        self.path = path
        self.st = None
        if path and os.path.exists(path):
            with open(path) as f:
                self.st = json.load(f)
        if self.st is None:
            rsa2048 = "010800002000"
            self.st = {
                "serial": secrets.token_hex(4),
                "pw": {"81": "123456", "83": "12345678"},
                "tries": {"81": 3, "83": 3},
                "do": {"c1": rsa2048, "c2": rsa2048, "c3": rsa2048,
                       "c4": "01", "5b": "", "5f2d": "656e", "5f35": "39"},
                "keys": {},
                "sigcount": 0,
            }
            self.save()
        self.power_on()

    def save(self):
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.st, f)
            os.replace(tmp, self.path)

    def power_on(self):
        self.verified = set()
        self.selected = False
        self.pending = b""  # GET RESPONSE remainder
        self.chain = b""  # command chaining accumulator

    # --- data objects -------------------------------------------------
    def aid(self):
        return AID_PREFIX + bytes.fromhex("0201" "fffe" + self.st["serial"] + "0000")

    def do(self, tag):
        v = self.st["do"].get("%x" % tag)
        return None if v is None else bytes.fromhex(v)

    def simple(self, tag, default=b""):
        v = self.do(tag)
        return default if v is None else v

    def pw_status(self):
        t = self.st["tries"]
        # The resetting-code counter (no RC is set) mirrors PW1's: OpenSC 0.23's
        # pgp_pin_cmd(GET_INFO) reads c4[4 + (ref & 0x0F)], i.e. the RC byte
        # for "User PIN (sig)" (ref 0x81), and would call that PIN locked.
        return self.simple(0xC4, b"\x01")[:1] + bytes([0x7F, 0x7F, 0x7F, t["81"], t["81"], t["83"]])

    def fingerprints(self, base):
        return b"".join(self.simple(base + i, bytes(20)) for i in range(3))

    def get_data(self, tag):
        if tag == 0x4F:
            return self.aid()
        if tag == 0x5F52:
            return HIST
        if tag == 0xC0:
            # key import, PW status changeable, private DOs, algorithm
            # attributes changeable; no SM; challenge 0; cert/cmd/resp 2048
            return bytes([0x3C, 0, 0, 0, 8, 0, 8, 0, 8, 0])
        if tag == 0xC4:
            return self.pw_status()
        if tag == 0xC5:
            return self.fingerprints(0xC7)
        if tag == 0xC6:
            return self.fingerprints(0xCA)
        if tag == 0xCD:
            return b"".join(self.simple(0xCE + i, bytes(4)) for i in range(3))
        if tag == 0x93:
            return i2b(self.st["sigcount"], 3)
        if tag == 0x6E:
            disc = b"".join(tlv(t, self.get_data(t)) for t in (0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xCD))
            return tlv(0x4F, self.aid()) + tlv(0x5F52, HIST) + tlv(0x73, disc)
        if tag == 0x65:
            return b"".join(tlv(t, self.simple(t)) for t in (0x5B, 0x5F2D, 0x5F35))
        if tag == 0x7A:
            return tlv(0x93, self.get_data(0x93))
        if (tag == 0x103 and "82" not in self.verified) or (tag == 0x104 and "83" not in self.verified):
            raise SwError(0x6982)
        if tag in (0x5E, 0x5F50, 0x7F21, 0x5B, 0x5F2D, 0x5F35) or 0x101 <= tag <= 0x104 or 0xC1 <= tag <= 0xD0:
            return self.simple(tag)
        raise SwError(0x6A88)

    def put_data(self, tag, data):
        need = "82" if tag in (0x101, 0x103) else "83"
        if need not in self.verified:
            raise SwError(0x6982)
        if tag == 0xC4:
            self.st["do"]["c4"] = data[:1].hex()
        elif tag in (0x5E, 0x5F50, 0x7F21, 0x5B, 0x5F2D, 0x5F35, 0x101, 0x102, 0x103, 0x104) \
                or 0xC1 <= tag <= 0xC3 or 0xC7 <= tag <= 0xD0:
            if 0xC1 <= tag <= 0xC3 and data[:1] != b"\x01":
                raise SwError(0x6A80)  # RSA only
            self.st["do"]["%x" % tag] = data.hex()
        elif tag == 0x3FFF:
            self.import_key(data)
        else:
            raise SwError(0x6A88)
        self.save()

    # --- keys ---------------------------------------------------------
    def key(self, slot):
        k = self.st["keys"].get(str(slot))
        if k is None:
            raise SwError(0x6A88)
        return {n: int(v, 16) for n, v in k.items()}

    def set_key(self, slot, rsa):
        self.st["keys"][str(slot)] = {"n": "%x" % rsa.n, "e": "%x" % rsa.e, "d": "%x" % rsa.d}
        if slot == 1:
            self.st["sigcount"] = 0

    def public_key_template(self, slot):
        k = self.key(slot)
        return tlv(0x7F49, tlv(0x81, i2b(k["n"])) + tlv(0x82, i2b(k["e"])))

    def generate(self, p1, data):
        slot = KEY_CRT.get(data[0]) if data else None
        if slot is None:
            raise SwError(0x6A80)
        if p1 == 0x80:
            if "83" not in self.verified:
                raise SwError(0x6982)
            attr = self.simple(0xC0 + slot)
            bits = int.from_bytes(attr[1:3], "big") if attr[:1] == b"\x01" else 2048
            self.set_key(slot, RSA.generate(bits, e=65537))
            self.save()
        elif p1 != 0x81:
            raise SwError(0x6A86)
        return self.public_key_template(slot)

    def import_key(self, data):
        (tag, body), = list(parse_tlv(data))[:1]
        if tag != 0x4D:
            raise SwError(0x6A80)
        items = dict(parse_tlv(body))
        crt = next((t for t in KEY_CRT if t in items), None)
        if crt is None or 0x7F48 not in items or 0x5F48 not in items:
            raise SwError(0x6A80)
        blob, vals, off = items[0x5F48], {}, 0
        for t, n in parse_header_list(items[0x7F48]):
            vals[t] = int.from_bytes(blob[off:off + n], "big")
            off += n
        e, p, q = vals.get(0x91), vals.get(0x92), vals.get(0x93)
        if not (e and p and q):
            raise SwError(0x6A80)
        d = pow(e, -1, (p - 1) * (q - 1))
        self.set_key(KEY_CRT[crt], RSA.construct((p * q, e, d, p, q)))

    def rsa_private(self, slot, data):
        k = self.key(slot)
        n, d = k["n"], k["d"]
        size = (n.bit_length() + 7) // 8
        if len(data) > size - 11:
            raise SwError(0x6700)
        em = b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data
        return i2b(pow(int.from_bytes(em, "big"), d, n), size)

    def decipher(self, data):
        if data[:1] != b"\x00":
            raise SwError(0x6A80)
        k = self.key(2)
        n = k["n"]
        size = (n.bit_length() + 7) // 8
        em = i2b(pow(int.from_bytes(data[1:], "big"), k["d"], n), size)
        if em[:2] != b"\x00\x02" or b"\x00" not in em[2:]:
            raise SwError(0x6A80)
        return em[em.index(b"\x00", 2) + 1:]

    # --- PINs ---------------------------------------------------------
    def verify(self, p2, data):
        ref = {0x81: "81", 0x82: "81", 0x83: "83"}.get(p2)
        if ref is None:
            raise SwError(0x6A86)
        key = "%02x" % p2
        if not data:
            if key in self.verified:
                return b""
            raise SwError(0x63C0 | self.st["tries"][ref])
        if self.st["tries"][ref] == 0:
            raise SwError(0x6983)
        if data.decode("latin-1") != self.st["pw"][ref]:
            self.st["tries"][ref] -= 1
            self.save()
            raise SwError(0x63C0 | self.st["tries"][ref])
        self.st["tries"][ref] = 3
        self.save()
        self.verified.add(key)
        return b""

    def change(self, p2, data):
        ref = {0x81: "81", 0x83: "83"}.get(p2)
        if ref is None:
            raise SwError(0x6A86)
        old = self.st["pw"][ref].encode("latin-1")
        if data[:len(old)] != old:
            self.st["tries"][ref] = max(0, self.st["tries"][ref] - 1)
            self.save()
            raise SwError(0x63C0 | self.st["tries"][ref])
        self.st["pw"][ref] = data[len(old):].decode("latin-1")
        self.st["tries"][ref] = 3
        self.save()
        return b""

    # --- APDU dispatch -----------------------------------------------
    def process(self, apdu):
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        body, data, ne = apdu[4:], b"", 0
        if len(body) == 1:
            ne = body[0] or 256
        elif len(body) > 1 and body[0] == 0 and len(body) >= 3:
            if len(body) == 3:
                ne = int.from_bytes(body[1:3], "big") or 65536
            else:
                lc = int.from_bytes(body[1:3], "big")
                data = body[3:3 + lc]
                if len(body) > 3 + lc:
                    ne = int.from_bytes(body[3 + lc:], "big") or 65536
        elif len(body) > 1:
            lc = body[0]
            data = body[1:1 + lc]
            if len(body) > 1 + lc:
                ne = body[1 + lc] or 256
        if ins == 0xC0:  # GET RESPONSE
            out, self.pending = self.pending, b""
            return self.reply(out, ne)
        self.pending = b""
        if cla & 0x10:  # command chaining: accumulate
            self.chain += data
            return SW_OK
        data, self.chain = self.chain + data, b""
        try:
            out = self.dispatch(ins, p1, p2, data)
        except SwError as e:
            return e.sw.to_bytes(2, "big")
        except Exception as e:  # noqa: BLE001 - report, keep the card alive
            print("pgpcard: error on %s: %r" % (apdu.hex(), e), file=sys.stderr)
            return b"\x6F\x00"
        return self.reply(out, ne)

    def reply(self, out, ne):
        if len(out) <= max(ne, 0) or not out:
            return out + SW_OK
        self.pending = out[ne:]
        rest = len(self.pending)
        return out[:ne] + bytes([0x61, rest if rest < 256 else 0])

    def dispatch(self, ins, p1, p2, data):
        if ins == 0xA4:
            if p1 == 0x04 and data[:6] == AID_PREFIX:
                self.selected = True
                self.verified = set()
                return tlv(0x6F, tlv(0x84, self.aid()))
            raise SwError(0x6A82)
        if not self.selected:
            raise SwError(0x6985 if ins in (0xCA, 0xDA, 0xDB, 0x20, 0x47, 0x2A, 0x88) else 0x6D00)
        if ins == 0xCA:
            return self.get_data((p1 << 8) | p2)
        if ins in (0xDA, 0xDB):
            self.put_data((p1 << 8) | p2, data)
            return b""
        if ins == 0x20:
            return self.verify(p2, data)
        if ins == 0x24:
            return self.change(p2, data)
        if ins == 0x47:
            return self.generate(p1, data)
        if ins == 0x2A and (p1, p2) == (0x9E, 0x9A):
            if "81" not in self.verified:
                raise SwError(0x6982)
            sig = self.rsa_private(1, data)
            self.st["sigcount"] += 1
            if self.simple(0xC4, b"\x01")[:1] == b"\x00":
                self.verified.discard("81")
            self.save()
            return sig
        if ins == 0x2A and (p1, p2) == (0x80, 0x86):
            if "82" not in self.verified:
                raise SwError(0x6982)
            return self.decipher(data)
        if ins == 0x88:
            if "82" not in self.verified:
                raise SwError(0x6982)
            return self.rsa_private(3, data)
        raise SwError(0x6D00)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=35963)
    ap.add_argument("--state", help="JSON file keeping the card's state")
    ap.add_argument("-v", "--verbose", action="store_true", help="log APDUs to stderr")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    card = Card(args.state)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection((args.host, args.port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("pgpcard: connected to vpcd at %s:%d" % (args.host, args.port), file=sys.stderr, flush=True)
    try:
        while True:
            (n,) = struct.unpack("!H", recv_exact(sock, 2))
            msg = recv_exact(sock, n) if n else b""
            if n == 1:
                if msg[0] in (0, 1, 2):
                    card.power_on()
                    continue
                if msg[0] == 4:
                    out = ATR
                else:
                    continue
            else:
                out = card.process(msg)
                if args.verbose:
                    print("> %s\n< %s" % (msg.hex(), out.hex()), file=sys.stderr, flush=True)
            sock.sendall(struct.pack("!H", len(out)) + out)
    except EOFError:
        print("pgpcard: vpcd closed the connection", file=sys.stderr)


if __name__ == "__main__":
    main()
