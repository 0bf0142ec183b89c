"""What the tests share and no test module owns: the builders, readers and checks several test directories import.

Test modules import from here, never from one another or from a conftest; a helper one directory's tests use
alone lives here too, so that `tests.support` is the one place to look for them.
"""
