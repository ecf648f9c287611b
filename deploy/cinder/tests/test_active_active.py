"""Active/active: two cinder-volume services of one cluster (`cluster = ...`
in cinder.conf) share the backend through one volrepd. Two of Cinder's
VolumeManagers, each with its own driver and its own service record in the
same cluster, work on the same volumes; a failover runs as Cinder's cluster
flow runs it: manager A's failover(), then failover_completed() on every
service of the cluster (the RPC fan-out, delivered here by hand since
oslo.messaging's fake driver has no consumers)."""

import unittest

import volrep_support as vs
from volrep_support import pb

CLUSTER = 'volrep-aa@%s' % vs.BACKEND


def setUpModule():
    vs.setup_database()


def clustered_manager(node):
    """A VolumeManager for node, clustered in CLUSTER, set up as
    cinder-volume sets it up (init_host), with its own driver."""
    from oslo_utils import timeutils

    from cinder import context
    from cinder import objects
    from cinder.volume import manager
    host = '%s@%s' % (node, vs.BACKEND)
    ctxt = context.get_admin_context()
    service = objects.Service(ctxt, host=host, binary='cinder-volume',
                              topic='cinder-volume', report_count=1,
                              cluster_name=CLUSTER,
                              updated_at=timeutils.utcnow(),
                              **vs.service_versions())
    service.create()
    m = manager.VolumeManager(host=host, cluster=CLUSTER,
                              service_name=vs.BACKEND)
    m.init_host(added_to_cluster=False, service_id=service.id)
    return m


class ActiveActiveTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder import exception
        from cinder import objects
        cls.ctxt = vs.admin_context()
        cls.exception, cls.objects = exception, objects
        objects.Cluster(context.get_admin_context(), name=CLUSTER,
                        binary='cinder-volume').create()
        # Cinder refuses a clustered driver without SUPPORTS_ACTIVE_ACTIVE
        # (VolumeDriverException from the manager's constructor).
        cls.a = clustered_manager('aa-node-1')
        cls.b = clustered_manager('aa-node-2')
        cls.async_type = vs.volume_type_in_db(vs.ASYNC_SPECS)
        cls.plain_type = vs.volume_type_in_db({})

    def volume_in_cluster(self, vtype):
        """A volume as the scheduler leaves it for a cluster: host is the
        first manager's, cluster_name the cluster's."""
        vol = vs.volume_in_db(vtype)
        vol.host = self.a.host + '#' + vs.backend_info().volume_backend_name
        vol.cluster_name = CLUSTER + '#' + \
            vs.backend_info().volume_backend_name
        vol.save()
        return vol

    def volume(self, vol):
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def service(self, m):
        return self.objects.Service.get_by_args(self.ctxt, m.host,
                                                'cinder-volume')

    def active(self):
        return vs.backend_info().active_backend_id

    def test_both_services_are_clustered_and_up(self):
        for m in (self.a, self.b):
            self.assertTrue(m.driver.SUPPORTS_ACTIVE_ACTIVE)
            self.assertTrue(m.driver.initialized)
            self.assertTrue(self.service(m).is_clustered)
            self.assertEqual(vs.BACKEND, m.driver._backend)
        self.assertIsNot(self.a.driver, self.b.driver)
        # Both reach volrepd on loopback here (one host): a clustered
        # service is warned that the cluster must share one volrepd.
        with self.assertLogs('volrep_cinder.driver', 'WARNING') as logs:
            self.a.driver._check_cluster_daemon()
        self.assertIn('must use the same volrepd', ''.join(logs.output))

    def test_create_on_one_snapshot_and_delete_on_the_other(self):
        vol = self.volume_in_cluster(self.plain_type)
        self.a.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.volume(vol)
        self.assertEqual('available', vol.status)

        snap = self.objects.Snapshot(self.ctxt, volume_id=vol.id,
                                     volume_size=vol.size, status='creating',
                                     project_id='project', user_id='user',
                                     volume_type_id=vol.volume_type_id)
        snap.create()
        self.b.create_snapshot(self.ctxt, snap)
        snap = self.objects.Snapshot.get_by_id(self.ctxt, snap.id)
        self.assertEqual('available', snap.status)
        ids = [s.id for s in vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=vol.id)).snapshots]
        self.assertIn(snap.id, ids)
        # A deletes the snapshot B took, then B the volume A created.
        self.a.delete_snapshot(self.ctxt, snap)
        ids = [s.id for s in vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=vol.id)).snapshots]
        self.assertNotIn(snap.id, ids)
        vol = self.volume(vol)
        vol.status = 'deleting'
        vol.save()
        self.b.delete_volume(self.ctxt, vol)
        with self.assertRaises(self.exception.VolumeNotFound):
            self.volume(vol)
        with self.assertRaises(Exception):
            vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                    volume_id=vol.id))

    def complete(self):
        """The fan-out of finish_failover: every service of the cluster
        gets failover_completed with the updates the cluster got."""
        cluster = self.objects.Cluster.get_by_id(self.ctxt, None,
                                                 name=CLUSTER,
                                                 binary='cinder-volume')
        updates = {'active_backend_id': cluster.active_backend_id or '',
                   'replication_status': cluster.replication_status,
                   'disabled': cluster.disabled}
        for m in (self.b, self.a):
            m.failover_completed(self.ctxt, updates)
        return cluster

    def failback_if_needed(self):
        if self.active() not in ('', 'default'):
            self.a.failover(self.ctxt, 'default')
            self.complete()

    def test_failover_on_one_completes_on_both_and_fails_back(self):
        targets = vs.backend_info().replication_targets
        if not any(t.type == 'async' for t in targets):
            vs.skip('the backend has no async replication_device')
        target = [t.backend_id for t in targets if t.type == 'async'][0]
        self.addCleanup(self.failback_if_needed)
        vol = self.volume_in_cluster(self.async_type)
        self.a.create_volume(self.ctxt, vol, allow_reschedule=False)
        self.assertEqual('enabled', self.volume(vol).replication_status)
        vs.wait_for(lambda: vs.raw('GetReplicationInfo',
                                   pb.GetReplicationInfoRequest(
                                       backend=vs.BACKEND, volume_id=vol.id)
                                   ).last_sync_time.seconds > 0,
                    'the first copy of the replicated volume')

        # Stage one on A: the clustered manager calls the driver's
        # failover (not failover_host) and records it on the cluster.
        self.a.failover(self.ctxt, target)
        cluster = self.complete()
        self.assertEqual(target, cluster.active_backend_id)
        self.assertEqual('failed-over', cluster.replication_status)
        self.assertEqual('failed-over', self.volume(vol).replication_status)
        self.assertEqual(target, self.active())
        for m in (self.a, self.b):
            svc = self.service(m)
            self.assertEqual(target, svc.active_backend_id)
            self.assertEqual('failed-over', svc.replication_status)
            # failover_completed succeeded: Cinder sets 'error' otherwise.
            self.assertNotEqual('error', svc.replication_status)
            self.assertEqual(target, m.driver._active_backend_id)
        # Both drivers see volrepd's state: B, which did not run the
        # failover, serves the volume from the target.
        dv = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume
        self.assertEqual(vol.id, dv.id)
        info = self.b.driver.initialize_connection(self.volume(vol),
                                                   {'host': 'compute-aa'})
        self.assertTrue(info['data'])
        self.b.driver.terminate_connection(self.volume(vol),
                                           {'host': 'compute-aa'})
        stats = self.b.driver.get_volume_stats(refresh=True)
        self.assertEqual('up', stats['backend_state'])

        # Fail back from B this time; A completes too.
        self.b.failover(self.ctxt, 'default')
        cluster = self.complete()
        self.assertFalse(cluster.active_backend_id)
        self.assertEqual('enabled', cluster.replication_status)
        self.assertIn(self.active(), ('', 'default'))
        for m in (self.a, self.b):
            svc = self.service(m)
            self.assertFalse(svc.active_backend_id)
            # A failback's failover_completed gets active_backend_id '':
            # refused by volrepd, Cinder would mark the service 'error'.
            self.assertEqual('enabled', svc.replication_status)
            self.assertIsNone(m.driver._active_backend_id)
        self.assertEqual('enabled', self.volume(vol).replication_status)
        vol = self.volume(vol)
        vol.status = 'deleting'
        vol.save()
        self.a.delete_volume(self.ctxt, vol)

    def test_stale_completion_does_not_move_volrepd(self):
        # A cluster that settled on a target volrepd does not serve from
        # (its first stage failed after volrepd switched, or before): the
        # completion is refused, Cinder marks the service in error, and
        # volrepd's backend stays where it is.
        targets = vs.backend_info().replication_targets
        if not targets:
            vs.skip('the backend has no replication_device')
        self.assertIn(self.active(), ('', 'default'))
        with self.assertRaises(self.exception.VolumeBackendAPIException):
            self.b.driver.failover_completed(self.ctxt, targets[0].backend_id)
        self.b.failover_completed(self.ctxt, {
            'active_backend_id': targets[0].backend_id})
        svc = self.service(self.b)
        self.assertEqual('error', svc.replication_status)
        self.assertTrue(svc.disabled)
        self.assertIn(self.active(), ('', 'default'))
        self.assertIsNone(self.b.driver._active_backend_id)
        # Set right again (as failover-host would) for whatever runs next.
        self.b.failover_completed(self.ctxt, {
            'active_backend_id': '', 'replication_status': 'enabled',
            'disabled': False})
        svc = self.service(self.b)
        self.assertEqual('enabled', svc.replication_status)


if __name__ == '__main__':
    unittest.main()
