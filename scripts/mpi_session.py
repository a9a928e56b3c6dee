"""The processes of an mpirun job, for the tests and chaos runs that signal
or kill a stage: its ranks, and kill -9 of the job and all of them.

Start the job with `subprocess.Popen(..., start_new_session=True)`, then call
`kill_session(proc)`. Open MPI gives each rank a process group of its own
inside mpirun's session, so `os.killpg(mpirun)` kills mpirun alone and leaves
the ranks running on, into whatever runs next in the same folder. This
module kills every live process of the session instead, and returns only
once they are gone.
"""
import os
import signal
import subprocess
import time


def live_session_pids(session):
    """Pids of the processes of `session` that are not zombies (a zombie has
    exited and holds no files; one whose parent died is never reaped)."""
    rows = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(session)], capture_output=True, text=True).stdout
    return [int(cols[0]) for cols in map(str.split, rows.splitlines()) if cols and not cols[1].startswith("Z")]


def rank_pids(proc):
    """The dinv ranks of the job `proc` (a session leader), ascending."""
    out = subprocess.run(["pgrep", "-s", str(proc.pid), "-x", "dinv"], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def kill_session(proc, timeout=60):
    """SIGKILL to `proc` (a session leader) and every live process of its
    session, repeated until none is left; then reaps `proc` (its pipes are
    drained, so a caller may read what it wrote). Raises if any survives
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while pids := live_session_pids(proc.pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of session {proc.pid} survived kill -9 for {timeout} s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between ps and kill
        time.sleep(0.05)
    return proc.communicate()
