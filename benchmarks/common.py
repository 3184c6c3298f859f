"What every benchmark script reports about the machine: its CPU, and how busy other processes kept it."
import os, platform

def cpu_seconds():
    "(CPU seconds used by all processes, by this one) so far; None where /proc/stat is missing"
    try: busy = sum(int(v) for i, v in enumerate(open('/proc/stat').readline().split()[1:]) if i not in (3, 4))
    except OSError: return None
    t = os.times()
    return busy/os.sysconf('SC_CLK_TCK'), t.user + t.system

def cpu_name() -> str:
    "The CPU's model name"
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def other_load(c0, w0:float, now:float) -> str:
    "How many CPUs other processes used on average since `c0 = cpu_seconds()` at wall time `w0`"
    if not c0 or not (c1 := cpu_seconds()): return ''
    return (f"other processes used {((c1[0]-c0[0]) - (c1[1]-c0[1]))/(now-w0):.2f} of the {os.cpu_count()} CPUs on "
            f"average during the run (0 = a quiet machine)")
