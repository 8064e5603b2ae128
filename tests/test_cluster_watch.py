"""The cluster's watch ends a run whose main thread does not answer its SIGINT, in one line (no Ray)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import signal, time
    from unet_infer.cluster import rounds
    rounds.POLL_S, rounds.SETTLE_S, rounds.RESEND_S, rounds.FORCE_S = 0.05, 0.1, 0.2, 1.0

    class Lost:  # the round's only node is gone, and nothing live holds an actor
        @staticmethod
        def live_nodes():
            return {("head", "127.0.0.1"): (0.0, 0.0)}

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a main thread that never sees the SIGINT
    watch = rounds.Watch(Lost, [("worker", "127.0.0.1")], 1, 0, lambda reason, alive: f"stuck: {reason}, {len(alive)} live")
    watch.waiting = True
    watch.start()
    time.sleep(30)
    print("not ended")
""")


def test_an_unanswered_sigint_ends_the_run_in_one_line():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: stuck: no live node holds an actor, 1 live"
    assert "not ended" not in proc.stdout
