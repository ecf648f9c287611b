"""cinder-volume runs on eventlet with everything monkey-patched. A gRPC call
blocks in C; the driver runs it in eventlet's native thread pool so other
green threads keep running. This runs the driver in a monkey-patched child
process with calls in parallel green threads and a ticker that must keep
ticking while they wait."""

import os
import subprocess
import sys
import textwrap
import unittest

import volrep_support as vs

CHILD = textwrap.dedent('''
    import eventlet
    eventlet.monkey_patch()
    import sys, time
    sys.path.insert(0, %(tests)r)
    import volrep_support as vs
    from cinder import context, objects
    from volrep_cinder import driver
    assert driver._GRPC_NATIVE, 'grpc was not bound to native threads'
    drv = vs.make_driver()
    ctxt = context.get_admin_context()
    drv.do_setup(ctxt)
    ticks = [0]
    def ticker():
        while True:
            ticks[0] += 1
            eventlet.sleep(0.005)
    eventlet.spawn(ticker)
    def work(i):
        vol = objects.Volume(ctxt, id=vs.new_id(), _name_id=None, size=1,
                             metadata={}, volume_type_id=None,
                             volume_type=None)
        drv.create_volume(vol)
        drv.get_volume_stats(refresh=True)
        drv.extend_volume(vol, 2)
        drv.delete_volume(vol)
        return i
    start = time.monotonic()
    pool = eventlet.GreenPool(8)
    done = sorted(pool.imap(work, range(32)))
    elapsed = time.monotonic() - start
    assert done == list(range(32)), done
    # The ticker ran while the calls were in flight.
    assert ticks[0] >= 3, (ticks[0], elapsed)
    print('OK %%d calls, %%d ticks in %%.2fs' %% (32 * 4, ticks[0], elapsed))
''')


class EventletTest(unittest.TestCase):

    def test_calls_under_monkey_patching(self):
        vs.require_daemon()
        try:
            import eventlet  # noqa: F401
        except ImportError:
            vs.skip('eventlet is not installed')
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
        r = subprocess.run([sys.executable, '-c', CHILD % {'tests': here}],
                           env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(0, r.returncode, r.stdout + r.stderr)
        self.assertIn('OK 128 calls', r.stdout)


if __name__ == '__main__':
    unittest.main()
