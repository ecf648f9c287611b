"""The driver under Cinder's own VolumeManager: an in-memory sqlite database
(oslo.db, schema by Cinder's migrations) and oslo.messaging's fake driver,
so the manager's create/delete flows, its model-update handling and its
stats reporting run as in cinder-volume; then the scheduler's HostManager
takes those stats."""

import unittest

from oslo_utils import timeutils

import volrep_support as vs
from volrep_support import pb


def setUpModule():
    vs.setup_database()


class VolumeManagerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import objects
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()
        cls.async_type = vs.volume_type_in_db(vs.ASYNC_SPECS)
        cls.plain_type = vs.volume_type_in_db({})
        cls.sync_type = vs.volume_type_in_db(vs.SYNC_SPECS)

    def test_init_host_set_up_the_driver(self):
        from volrep_cinder.driver import VolrepDriver
        self.assertIsInstance(self.manager.driver, VolrepDriver)
        self.assertTrue(self.manager.driver.initialized)
        self.assertEqual(vs.BACKEND, self.manager.driver._backend)

    def test_create_replicated_volume(self):
        vol = vs.volume_in_db(self.async_type)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        self.assertEqual('enabled', vol.replication_status)
        self.assertEqual('volume-%s-cinder' % vol.id, vol.provider_id)
        dv = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume
        self.assertEqual(pb.REPLICATION_STATUS_ENABLED, dv.replication_status)
        members = vs.pg_members()
        if members is not None:
            self.assertIn(vol.provider_id, members)

    def test_create_refused_by_the_backend_is_an_error(self):
        if any(t.type == 'sync' for t in vs.backend_info().replication_targets):
            vs.skip('this backend has a sync target')
        vol = vs.volume_in_db(self.sync_type)
        try:
            self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        except Exception:
            pass  # the manager re-raises after recording the error
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('error', vol.status)

    def test_snapshot_extend_and_delete(self):
        vol = vs.volume_in_db(self.plain_type)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        self.assertEqual('disabled', vol.replication_status)

        snap = self.objects.Snapshot(self.ctxt, volume_id=vol.id,
                                     volume_size=vol.size, status='creating',
                                     project_id='project', user_id='user',
                                     volume_type_id=vol.volume_type_id)
        snap.create()
        self.manager.create_snapshot(self.ctxt, snap)
        snap = self.objects.Snapshot.get_by_id(self.ctxt, snap.id)
        self.assertEqual('available', snap.status)
        self.assertTrue(snap.provider_id)
        self.manager.delete_snapshot(self.ctxt, snap)
        ids = [s.id for s in vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=vol.id)).snapshots]
        self.assertNotIn(snap.id, ids)

        vol.status = 'extending'
        vol.save()
        self.manager.extend_volume(self.ctxt, vol, 2, [])
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual(2, vol.size)
        self.assertEqual(2, vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.size_gb)

        vol.status = 'deleting'
        vol.save()
        self.manager.delete_volume(self.ctxt, vol)
        from cinder import exception
        with self.assertRaises(exception.VolumeNotFound):
            self.objects.Volume.get_by_id(self.ctxt, vol.id)
        with self.assertRaises(Exception):
            vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                    volume_id=vol.id))

    def test_scheduler_places_types_by_the_reported_stats(self):
        from cinder.scheduler import host_manager
        self.manager._report_driver_status(self.ctxt)
        caps = self.manager.last_capabilities
        self.assertEqual('up', caps['backend_state'])
        hm = host_manager.HostManager()
        hm.update_service_capabilities('volume', vs.HOST, caps, None,
                                       timeutils.utcnow())
        states = list(hm.get_all_backend_states(self.ctxt))
        self.assertEqual(['%s#%s' % (vs.HOST, caps['volume_backend_name'])],
                         [s.host for s in states])

        from cinder.volume import volume_types

        def hosts(vtype):
            # What the scheduler is given: the type with its extra specs.
            vtype = volume_types.get_volume_type(self.ctxt, vtype['id'])
            props = {'resource_type': vtype,
                     'request_spec': {'volume_properties': {'size': 1}},
                     'size': 1}
            return [s.host for s in hm.get_filtered_backends(
                states, props, ['AvailabilityZoneFilter', 'CapacityFilter',
                                'CapabilitiesFilter'])]
        types = {t.type for t in vs.backend_info().replication_targets}
        self.assertEqual(1, len(hosts(self.plain_type)))
        if 'async' in types:
            self.assertEqual(1, len(hosts(self.async_type)))
        if types == {'async'}:
            self.assertEqual([], hosts(self.sync_type))


if __name__ == '__main__':
    unittest.main()
