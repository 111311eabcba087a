import os

# The notebooks read this flag in their parameters cell: tiny sizes under test.
os.environ.setdefault("BERTG4_SMOKE", "1")
