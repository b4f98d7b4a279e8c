"""Print ``tick <n> <unix time>`` lines at a steady pace."""

import sys
import time

ticks, interval = int(sys.argv[1]), float(sys.argv[2])
for n in range(ticks):
    print(f"tick {n} {time.time():.6f}", flush=True)
    time.sleep(interval)
