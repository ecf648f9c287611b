"""failover_host retries UNAVAILABLE within volrep_failover_wait.

A failover or failback is asked for while arrays come and go: one refusal
must not leave the service in failover-error when the next try works. The
driver talks to a DriverService of our own here, which refuses as told.
"""

import threading
import time
import unittest
from concurrent import futures
from unittest import mock

import volrep_support as vs
from volrep_support import driver_service_pb2_grpc, grpc, pb


class FlakyDriverService(driver_service_pb2_grpc.DriverServiceServicer):
    """Answers FailoverHost with `code` for the first `failures` calls."""

    def __init__(self, failures, code=grpc.StatusCode.UNAVAILABLE):
        self.failures, self.code = failures, code
        self.calls = 0
        self.lock = threading.Lock()

    def FailoverHost(self, request, context):
        with self.lock:
            self.calls += 1
            calls = self.calls
        if calls <= self.failures:
            context.abort(self.code, 'backend %s is down: primary array at '
                          '127.0.0.1:1 is unreachable' % request.backend)
        return pb.FailoverHostResponse(active_backend_id='default')


class FailoverRetryTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import exception
        cls.exception = exception
        cls.ctxt = vs.admin_context()

    def driver_for(self, service, wait):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        driver_service_pb2_grpc.add_DriverServiceServicer_to_server(
            service, server)
        port = server.add_insecure_port('127.0.0.1:0')
        server.start()
        self.addCleanup(server.stop, None)
        drv = vs.make_driver()
        drv._address, drv._timeout, drv._metadata = (
            '127.0.0.1:%d' % port, 10.0, ())
        drv._channel = grpc.insecure_channel(drv._address)
        self.addCleanup(drv._channel.close)
        drv._stub = driver_service_pb2_grpc.DriverServiceStub(drv._channel)
        drv._backend = vs.BACKEND
        patcher = mock.patch.object(drv, '_failover_wait', return_value=wait)
        patcher.start()
        self.addCleanup(patcher.stop)
        return drv

    def test_transient_unavailable_is_retried(self):
        svc = FlakyDriverService(failures=2)
        drv = self.driver_for(svc, wait=30)
        active, volumes, groups = drv.failover_host(self.ctxt, [], 'default')
        self.assertEqual('default', active)
        self.assertEqual(3, svc.calls)

    def test_unavailable_beyond_the_wait_fails(self):
        svc = FlakyDriverService(failures=10 ** 6)
        drv = self.driver_for(svc, wait=1.5)
        start = time.monotonic()
        with self.assertRaises(self.exception.VolumeBackendAPIException) as cm:
            drv.failover_host(self.ctxt, [], 'default')
        elapsed = time.monotonic() - start
        self.assertIn('UNAVAILABLE', str(cm.exception))
        self.assertGreaterEqual(svc.calls, 2)
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 10)

    def test_no_wait_means_one_try(self):
        svc = FlakyDriverService(failures=1)
        drv = self.driver_for(svc, wait=0)
        with self.assertRaises(self.exception.VolumeBackendAPIException):
            drv.failover_host(self.ctxt, [], 'default')
        self.assertEqual(1, svc.calls)

    def test_refused_target_is_not_retried(self):
        svc = FlakyDriverService(failures=1,
                                 code=grpc.StatusCode.INVALID_ARGUMENT)
        drv = self.driver_for(svc, wait=30)
        with self.assertRaises(self.exception.InvalidReplicationTarget):
            drv.failover_host(self.ctxt, [], 'no-such-target')
        self.assertEqual(1, svc.calls)

    def test_the_wait_is_read_from_the_backend_section(self):
        drv = vs.make_driver()
        self.assertEqual(30.0, drv._failover_wait())
        vs.setup_cinder().set_override('volrep_failover_wait', 7,
                                       group=vs.BACKEND)
        self.addCleanup(vs.setup_cinder().clear_override,
                        'volrep_failover_wait', group=vs.BACKEND)
        self.assertEqual(7.0, drv._failover_wait())


if __name__ == '__main__':
    unittest.main()
