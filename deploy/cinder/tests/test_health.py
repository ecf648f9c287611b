"""The driver's initialized follows volrepd's word on the backend.

Cinder's Service.report_state sends no heartbeat while the manager's
is_working() (the driver's initialized) is false, so this is what shows a
backend down in `openstack volume service list`, and what brings it back up
once volrepd is fixed, with no restart of cinder-volume. Against the real
volrepd: a typo in its file and a reload, an address where nothing listens,
and one where something listens but never answers.
"""

import os
import signal
import socket
import threading
import time
import unittest

import volrep_support as vs

# The backend section's replication_device, and the seed lab's typo of it.
GOOD = 'replication_device = backend_id:'
TYPO = 'replication_device = bakend_id:'


def setUpModule():
    vs.setup_database()


class HealthTest(unittest.TestCase):

    def driver(self, group=None, ttl=0.2):
        from cinder import context
        d = vs.make_driver(group)
        d.do_setup(context.get_admin_context())
        d.check_for_setup_error()
        d.set_initialized()
        # Tests do not wait Cinder's report_interval.
        d.HEALTH_TTL = ttl
        return d

    def point_at(self, d, address):
        """Make d dial address from now on (as after an edit of
        volrep_address), keeping the backend it was set up for."""
        from cinder.volume import configuration
        configuration.CONF.set_override('volrep_address', address,
                                        group=vs.EXPLICIT_GROUP)
        self.addCleanup(configuration.CONF.clear_override, 'volrep_address',
                        group=vs.EXPLICIT_GROUP)
        d._connect()
        d._health_at = None  # ask now

    def test_initialized_while_volrepd_reports_the_backend_up(self):
        d = self.driver()
        self.assertTrue(d.initialized)
        self.assertTrue(vs.volume_manager().is_working())

    def test_not_initialized_before_setup_completes(self):
        # Cinder's own flag still gates: no call to volrepd before it.
        d = vs.make_driver()
        self.assertFalse(d.initialized)
        self.assertIsNone(d._health_at)

    def test_typo_and_reload_take_the_backend_down_and_up(self):
        pid = os.environ.get('VOLREP_DAEMON_PID')
        if not (pid and vs.CONF_FILE):
            vs.skip('needs VOLREP_DAEMON_PID and VOLREP_CONF to reload '
                    'volrepd (e2e/cinder_driver_test.go sets them)')
        with open(vs.CONF_FILE) as f:
            good = f.read()
        section = '[%s]' % vs.BACKEND
        head, sep, body = good.partition(section)
        self.assertTrue(sep and GOOD in body,
                        '%s has no %s... in %s' % (vs.CONF_FILE, GOOD,
                                                   section))
        typo = head + sep + body.replace(GOOD, TYPO, 1)
        d = self.driver()
        manager = vs.volume_manager()
        self.assertTrue(d.initialized)

        def reload(text):
            tmp = vs.CONF_FILE + '.new'
            with open(tmp, 'w') as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, vs.CONF_FILE)
            os.kill(int(pid), signal.SIGHUP)

        def restore():
            reload(good)
            vs.wait_for(lambda: vs.backend_info().up, 'volrepd to report '
                        '%s up again' % vs.BACKEND)
        reload(typo)
        self.addCleanup(restore)
        vs.wait_for(lambda: not d.initialized,
                    'initialized to turn false after the typo')
        self.assertIn('bakend_id', d._health_reason)
        # The manager Cinder runs reads it too: no heartbeats now.
        vs.wait_for(lambda: not manager.is_working(),
                    'the VolumeManager to stop working', timeout=10)
        from cinder import exception
        from cinder.volume import volume_utils
        with self.assertRaises(exception.DriverNotInitialized):
            volume_utils.require_driver_initialized(manager.driver)

        reload(good)
        vs.wait_for(lambda: d.initialized,
                    'initialized to turn true after the fix and reload')
        vs.wait_for(lambda: manager.is_working(),
                    'the VolumeManager to work again', timeout=10)

    def test_unreachable_volrepd_is_not_initialized(self):
        d = self.driver(vs.EXPLICIT_GROUP)
        self.assertTrue(d.initialized)
        self.point_at(d, '127.0.0.1:1')
        began = time.monotonic()
        self.assertFalse(d.initialized)
        self.assertLess(time.monotonic() - began, d.HEALTH_TIMEOUT + 1.0)
        self.assertIn('UNAVAILABLE', d._health_reason)
        self.assertIn('127.0.0.1:1', d._health_reason)
        # volrepd back (here: the right address again) brings it back.
        self.point_at(d, vs.ADDR)
        self.assertTrue(d.initialized)

    def test_a_hung_volrepd_costs_one_timeout_and_one_caller(self):
        # Something listens but never answers: the kernel completes the
        # connection, gRPC's handshake gets no reply.
        hung = socket.socket()
        hung.bind(('127.0.0.1', 0))
        hung.listen(16)
        self.addCleanup(hung.close)
        d = self.driver(vs.EXPLICIT_GROUP, ttl=60)
        self.point_at(d, '127.0.0.1:%d' % hung.getsockname()[1])
        calls = []
        real = d._find_backend

        def counted(**kwargs):
            calls.append(kwargs)
            return real(**kwargs)
        d._find_backend = counted

        answers = {}

        def ask(name):
            began = time.monotonic()
            answers[name] = (d.initialized, time.monotonic() - began)
        first = threading.Thread(target=ask, args=('first',))
        first.start()
        vs.wait_for(lambda: d._health_checking, 'the first check to start',
                    timeout=5)
        # Meanwhile others get the last answer at once (up, from setup).
        ask('second')
        first.join(timeout=d.HEALTH_TIMEOUT + 5)
        self.assertFalse(first.is_alive())
        self.assertEqual((True,), answers['second'][:1])
        self.assertLess(answers['second'][1], 0.5)
        up, took = answers['first']
        self.assertFalse(up)
        self.assertLess(took, d.HEALTH_TIMEOUT + 1.0)
        self.assertIn('DEADLINE_EXCEEDED', d._health_reason)
        # Within HEALTH_TTL the answer is reused: no second call.
        for _ in range(20):
            self.assertFalse(d.initialized)
        self.assertEqual([{'timeout': d.HEALTH_TIMEOUT}], calls)


if __name__ == '__main__':
    unittest.main()
