"""Python side of the interop tests (tests/crypto/python_interop.rs).

Reads a JSON request from the file named by argv[1]:
  {"decrypt": [{"keys": [key, ...], "token": str}, ...],   # Fernet for one key, MultiFernet otherwise
   "accepts": [key, ...],                                   # does Fernet(key) accept the key?
   "canonical": [key, ...]}                                 # is the key as Fernet.generate_key() prints keys?
and prints the answers as JSON on stdout, in the same order.
"""

import base64
import binascii
import json
import sys

import cryptography
from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def decrypt(case):
    try:
        fernets = [Fernet(key) for key in case["keys"]]
        cipher = fernets[0] if len(fernets) == 1 else MultiFernet(fernets)
        plaintext = cipher.decrypt(case["token"].encode("ascii"))
    except InvalidToken:
        return {"ok": False, "plaintext": None}
    return {"ok": True, "plaintext": plaintext.decode("utf-8")}


def accepts(key):
    try:
        Fernet(key)
    except ValueError:
        return False
    return True


def canonical(key):
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (ValueError, binascii.Error):
        return False
    return len(raw) == 32 and base64.urlsafe_b64encode(raw).decode("ascii") == key


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    answer = {
        "cryptography": cryptography.__version__,
        "decrypt": [decrypt(case) for case in request.get("decrypt", [])],
        "accepts": [accepts(key) for key in request.get("accepts", [])],
        "canonical": [canonical(key) for key in request.get("canonical", [])],
    }
    json.dump(answer, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
