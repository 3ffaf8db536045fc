# The marks a format leaves in the store's file system, so that a power cut between a reformat and
# the app's first commit cannot pass for a new meter (docs/storage.md, Boot with damaged storage).
# Imported only by store.mount and by the app after a reformat.
import os

# Left by a reformat until the app has committed a record that says its state is unknown
# (settled()): a power cut before that commit must not make the next boot see a clean, empty file
# system and take the meter for a new one (with its opening balance).
REFORMAT = "/.reformatted"
# Written after a new meter's format, so its root is never empty again: an empty root then means a
# cut right after a format, when the flash past the superblocks is still as it was (both files
# are small enough to live in the root's metadata blocks, which the format wrote).
BLANK = "/.formatted"


def pending(path, blank):
    """True while a reformat is not settled: its mark is there, or (a power cut between the format
    and its mark) the file system is empty and blank() says the flash past littlefs' superblocks
    still holds the old, unmountable data, where a new meter's is blank."""
    try:
        os.stat(path + REFORMAT)
        return True
    except OSError:
        pass
    try:
        for _ in os.ilistdir(path):
            return False  # anything at all: the app has been here since the format
    except OSError:
        return False  # unknown: the app's record decides
    if blank():
        return False
    mark(path, REFORMAT)
    return True


def mark(path, name):
    try:
        with open(path + name, "w") as f:
            f.write("1")
    except OSError:
        pass  # an empty file system says the same at the next boot (pending())


def settled(path):
    """The app committed a record after a reformat: remove the mark (a power cut before this
    leaves it, and the next boot loads that record and calls this again)."""
    try:
        os.remove(path + REFORMAT)
    except OSError:
        pass
