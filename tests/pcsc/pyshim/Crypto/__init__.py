# vicc (python3-virtualsmartcard 0.8 on Debian 12) imports PyCrypto's `Crypto`
# package, which Debian 12 no longer ships. python3-pycryptodome installs the
# same API as `Cryptodome`; this makes `import Crypto.X` load `Cryptodome.X`.
# card.sh puts this directory first on PYTHONPATH for vicc only.
import Cryptodome
from Cryptodome import *  # noqa: F401,F403

__path__ = Cryptodome.__path__
