"""Failover and failback through Cinder's VolumeManager.failover, which
calls the driver's failover_host and records what Cinder records: the
service's active_backend_id, replication_status and disabled flag, and each
volume's status and replication_status."""

import unittest

import volrep_support as vs
from volrep_support import pb


def setUpModule():
    vs.setup_database()


class FailoverTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import exception
        from cinder import objects
        cls.ctxt = vs.admin_context()
        cls.exception, cls.objects = exception, objects
        cls.manager = vs.volume_manager()
        cls.driver = cls.manager.driver
        targets = vs.backend_info().replication_targets
        if not targets:
            vs.skip('the backend has no replication_device')
        cls.target = targets[0].backend_id

    def require_failover_host(self):
        self.assertTrue(self.driver.has_rpc('FailoverHost'),
                        'volrepd\'s driver API has no FailoverHost RPC')
        # A target that does not exist is refused
        # (InvalidReplicationTarget) without changing anything.
        req = pb.FailoverHostRequest()
        from volrep_cinder.driver import _set_fields
        _set_fields(req, backend=vs.BACKEND,
                    secondary_id__secondary_backend_id__backend_id='no-such')
        with self.assertRaises(self.exception.InvalidReplicationTarget):
            self.driver._call('FailoverHost', req, invalid_target=True)

    def service(self):
        return self.objects.Service.get_by_args(self.ctxt, vs.HOST,
                                                'cinder-volume')

    def volume(self, vol):
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def active(self):
        return vs.backend_info().active_backend_id

    def failback_if_needed(self):
        if self.active() not in ('', 'default'):
            self.manager.failover(self.ctxt, 'default')

    def test_invalid_target_changes_nothing(self):
        self.require_failover_host()
        self.manager.failover(self.ctxt, 'no-such-target')
        svc = self.service()
        self.assertFalse(svc.disabled)
        self.assertEqual('enabled', svc.replication_status)
        self.assertIn(self.active(), ('', 'default'))

    def test_failover_then_failback(self):
        self.require_failover_host()
        self.addCleanup(self.failback_if_needed)
        replicated = vs.volume_in_db(vs.volume_type_in_db(vs.ASYNC_SPECS))
        plain = vs.volume_in_db(vs.volume_type_in_db({}))
        for vol in (replicated, plain):
            self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        self.assertEqual('enabled', self.volume(replicated).replication_status)
        self.assertEqual('disabled', self.volume(plain).replication_status)
        # Fail over once the volume's first copy is on the target.
        vs.wait_for(lambda: vs.raw('GetReplicationInfo',
                                   pb.GetReplicationInfoRequest(
                                       backend=vs.BACKEND,
                                       volume_id=replicated.id)
                                   ).last_sync_time.seconds > 0,
                    'the first copy of the replicated volume')

        self.manager.failover(self.ctxt, self.target)

        svc = self.service()
        self.assertEqual(self.target, svc.active_backend_id)
        self.assertEqual('failed-over', svc.replication_status)
        self.assertTrue(svc.disabled)
        self.assertEqual('failed-over', svc.disabled_reason)
        vol = self.volume(replicated)
        self.assertEqual('failed-over', vol.replication_status)
        self.assertEqual('available', vol.status)
        # Cinder errors the volumes that were not replicated.
        vol = self.volume(plain)
        self.assertEqual('error', vol.status)
        self.assertEqual('not-capable', vol.replication_status)
        self.assertEqual(self.target, self.active())
        # The failed-over volume is served from the target.
        dv = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=replicated.id)).volume
        self.assertEqual(replicated.id, dv.id)
        info = self.driver.initialize_connection(self.volume(replicated),
                                                 {'host': 'compute-1'})
        self.assertEqual('nbd', info['driver_volume_type'])
        self.driver.terminate_connection(self.volume(replicated),
                                         {'host': 'compute-1'})

        self.manager.failover(self.ctxt, 'default')

        svc = self.service()
        self.assertFalse(svc.active_backend_id)
        self.assertEqual('enabled', svc.replication_status)
        self.assertFalse(svc.disabled)
        vol = self.volume(replicated)
        self.assertEqual('enabled', vol.replication_status)
        self.assertEqual('available', vol.status)
        self.assertIn(self.active(), ('', 'default'))


if __name__ == '__main__':
    unittest.main()
