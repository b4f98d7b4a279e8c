"""What a hostile run leaves in a folder it can write (tests only).

``plant.py FOLDER HOST_FILE OTHER_FILE HOST_DIR SECONDS [STOP]``: in FOLDER, links
to HOST_FILE and OTHER_FILE (paths on the server, which a careless server would
follow), ``dir`` as a link to HOST_DIR, a FIFO, a socket, regular files (one with
a newline in its name), then, for SECONDS or until the file STOP appears (the
test is done with it: however slow the machine, the swaps outlast its probes),
``swap.txt`` swapped between a regular file and a link (by atomic renames) and
``swapdir`` between a folder and a link.
"""

import os
import socket
import sys
import time

folder, host_file, other_file, host_dir, seconds = sys.argv[1:6]
stop = sys.argv[6] if len(sys.argv) > 6 else None
os.chdir(folder)


def replace_with_link(target: str, name: str) -> None:
    os.symlink(target, name + ".new")
    os.replace(name + ".new", name)


def replace_with_file(name: str, data: bytes) -> None:
    with open(name + ".new", "wb") as handle:
        handle.write(data)
    os.replace(name + ".new", name)


replace_with_link(host_file, "host.txt")
replace_with_link(other_file, "other.txt")
replace_with_link(host_dir, "dir")
os.mkfifo("fifo.txt")
listener = socket.socket(socket.AF_UNIX)
listener.bind("socket.txt")
with open("regular.txt", "w") as handle:
    handle.write("a regular output\n")
with open("new\nline.txt", "w") as handle:
    handle.write("a name with a newline\n")
os.mkdir("swapdir")
with open("swapdir/inner.txt", "w") as handle:
    handle.write("inside a real folder\n")
replace_with_file("swap.txt", b"REGULAR\n")
print("##progress 10 planted", flush=True)

deadline = time.monotonic() + int(seconds)
swaps = 0
while time.monotonic() < deadline and not (stop and os.path.exists(stop)):
    replace_with_link(host_file, "swap.txt")
    os.rename("swapdir", "swapdir.real")  # the folder steps aside,
    os.symlink(host_dir, "swapdir")  # a link to the host's takes its name
    replace_with_file("swap.txt", b"REGULAR\n")
    os.unlink("swapdir")
    os.rename("swapdir.real", "swapdir")  # and the folder is back
    swaps += 1
print(f"swapped {swaps} times", flush=True)
