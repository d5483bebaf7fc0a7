# Other test directories use the fake the same way: import the fixture into their conftest.py.
from .fixtures import fake_discord as fake_discord
