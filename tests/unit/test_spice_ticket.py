"""spice-html5's SPICE ticket, as bin/copy-static installs it: always as long as the display's key.

Unpadded, about one link in 256 sent a 127-byte ticket and the SPICE server refused the channel with
"Permission denied" (seen as a console that failed now and then in the browser tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.source import ROOT

ENCRYPTIONS = 3000  # unpadded, all of them come out full length with a chance of (255/256)**3000 < 1e-5

SCRIPT = """
globalThis.window ??= globalThis;
globalThis.navigator ??= {appName: "node", appVersion: "5"};
const {rsa_encrypt} = await import(process.argv[1]);
const {RSAKey} = await import(process.argv[2]);
const key = new RSAKey();
key.setPublic(process.argv[3], "10001");
const lengths = {};
for (let i = 0; i < Number(process.argv[4]); i++) {
  const length = rsa_encrypt(key, String.fromCharCode(0)).length;
  lengths[length] = (lengths[length] || 0) + 1;
}
console.log(JSON.stringify(lengths));
"""


def test_every_ticket_is_as_long_as_the_key() -> None:
    spice = ROOT / "static" / "spice-html5"
    # The size of the key spice-server makes for each link (SPICE_TICKET_KEY_PAIR_LENGTH), weak or not.
    modulus = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers().n  # noqa: S505
    node = shutil.which("node")
    assert node is not None, "Node.js comes with npm, which bin/setup installs"
    result = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, (spice / "ticket.js").as_uri(),
         (spice / "thirdparty" / "rsa.js").as_uri(), f"{modulus:x}", str(ENCRYPTIONS)],
        capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"128": ENCRYPTIONS}
