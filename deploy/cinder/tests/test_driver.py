"""VolrepDriver through Cinder's own configuration, objects and exceptions,
against a real volrepd. No database: the objects are built in memory, as the
manager would hand them to the driver."""

import unittest

import volrep_support as vs
from volrep_support import pb


def setUpModule():
    vs.setup_cinder()


class DriverTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder import exception
        from cinder.objects import fields
        from cinder import objects
        cls.exception, cls.fields, cls.objects = exception, fields, objects
        cls.ctxt = context.get_admin_context()
        cls.driver = vs.make_driver()
        cls.driver.do_setup(cls.ctxt)
        cls.driver.check_for_setup_error()

    def volume_type(self, specs, name=None):
        return self.objects.VolumeType(self.ctxt, id=vs.new_id(),
                                       name=name or 'type-%s' % vs.new_id(),
                                       extra_specs=dict(specs))

    def volume(self, specs=None, size=1):
        vtype = self.volume_type(specs) if specs is not None else None
        return self.objects.Volume(
            self.ctxt, id=vs.new_id(), _name_id=None, size=size, metadata={},
            volume_type_id=vtype.id if vtype else None, volume_type=vtype)

    def snapshot(self, volume):
        return self.objects.Snapshot(self.ctxt, id=vs.new_id(),
                                     volume_id=volume.id,
                                     volume_size=volume.size, metadata={})

    def create(self, specs=None, size=1):
        vol = self.volume(specs, size)
        update = self.driver.create_volume(vol)
        self.addCleanup(self.remove, vol)
        return vol, update

    def remove(self, vol):
        """Best-effort cleanup; test_delete_replicated_volume is the test
        that a replicated volume can be deleted."""
        try:
            self.driver.delete_volume(vol)
        except self.exception.VolumeIsBusy as err:
            print('cleanup: volume %s left on the backend: %s' % (vol.id, err))

    def daemon_volume(self, vol):
        return vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume

    # ---- setup ----------------------------------------------------------

    def test_setup_finds_the_backend(self):
        self.assertEqual(vs.BACKEND, self.driver._backend)
        self.assertTrue(self.driver.supports_replication_feature('v2.1'))

    def test_setup_with_explicit_address_and_volume_backend_name(self):
        # [volrep-explicit] sets volrep_address / volrep_token itself and is
        # not a volrepd section: the backend is found by its name.
        d = vs.make_driver(vs.EXPLICIT_GROUP)
        d.do_setup(self.ctxt)
        d.check_for_setup_error()
        self.assertEqual(vs.BACKEND, d._backend)
        self.assertEqual(30.0, d._timeout)

    def test_wrong_token_is_refused_with_the_daemon_message(self):
        if not vs.TOKEN:
            vs.skip('the daemon has no driver_api_token')
        from cinder.volume import configuration
        d = vs.make_driver(vs.EXPLICIT_GROUP)
        configuration.CONF.set_override('volrep_token', 'wrong',
                                        group=vs.EXPLICIT_GROUP)
        self.addCleanup(configuration.CONF.clear_override, 'volrep_token',
                        group=vs.EXPLICIT_GROUP)
        with self.assertRaises(self.exception.VolumeBackendAPIException) as c:
            d.do_setup(self.ctxt)
        self.assertIn('UNAUTHENTICATED', str(c.exception))

    def test_missing_backend_is_a_setup_error(self):
        from cinder.volume import configuration
        d = vs.make_driver(vs.EXPLICIT_GROUP)
        configuration.CONF.set_override('volume_backend_name', 'no-such',
                                        group=vs.EXPLICIT_GROUP)
        self.addCleanup(configuration.CONF.clear_override,
                        'volume_backend_name', group=vs.EXPLICIT_GROUP)
        with self.assertRaises(self.exception.VolumeDriverException) as c:
            d.do_setup(self.ctxt)
        self.assertIn(vs.BACKEND, str(c.exception))  # what it does serve

    # ---- volumes --------------------------------------------------------

    def test_create_replicated_volume_goes_in_the_protection_group(self):
        vol, update = self.create(vs.ASYNC_SPECS)
        self.assertEqual(self.fields.ReplicationStatus.ENABLED,
                         update['replication_status'])
        self.assertEqual('volume-%s-cinder' % vol.id, update['provider_id'])
        # The model update is one Cinder's Volume object takes as is.
        vol.update(update)
        self.assertEqual('enabled', vol.replication_status)
        # The daemon, which asks the array, agrees...
        dv = self.daemon_volume(vol)
        self.assertEqual(pb.REPLICATION_STATUS_ENABLED, dv.replication_status)
        self.assertEqual(update['provider_id'], dv.provider_id)
        # ...and so does the array's protection group.
        members = vs.pg_members()
        if members is not None:
            self.assertIn(update['provider_id'], members)

    def test_create_unreplicated_volume(self):
        for specs in (None, {}):
            vol, update = self.create(specs)
            self.assertEqual(self.fields.ReplicationStatus.DISABLED,
                             update['replication_status'])
            members = vs.pg_members()
            if members is not None:
                self.assertNotIn(update['provider_id'], members)

    def test_sync_type_without_sync_target_is_refused(self):
        vol = self.volume(vs.SYNC_SPECS)
        with self.assertRaises(self.exception.VolumeBackendAPIException) as c:
            self.driver.create_volume(vol)
        self.assertIn('FAILED_PRECONDITION', str(c.exception))
        self.assertIn('replication_device', str(c.exception))

    def test_extend(self):
        vol, _ = self.create(size=1)
        self.driver.extend_volume(vol, 3)
        self.assertEqual(3, self.daemon_volume(vol).size_gb)

    def test_extend_missing_volume_carries_the_daemon_message(self):
        vol = self.volume()
        with self.assertRaises(self.exception.VolumeBackendAPIException) as c:
            self.driver.extend_volume(vol, 2)
        self.assertIn('NOT_FOUND', str(c.exception))
        self.assertIn(vol.id, str(c.exception))

    def test_delete_is_idempotent(self):
        vol, _ = self.create()
        self.driver.delete_volume(vol)
        self.driver.delete_volume(vol)  # NOT_FOUND is success
        with self.assertRaises(Exception):
            self.daemon_volume(vol)

    def test_delete_replicated_volume(self):
        # Once the protection group has shipped the volume, the primary
        # holds the group's replication snapshots of it: Cinder knows
        # nothing of those, so they must not keep the volume from going.
        vol, update = self.create(vs.ASYNC_SPECS)
        vs.wait_for(lambda: vs.raw('GetReplicationInfo',
                                   pb.GetReplicationInfoRequest(
                                       backend=vs.BACKEND, volume_id=vol.id)
                                   ).last_sync_time.seconds > 0,
                    'the first copy of %s to reach the target' % vol.id)
        try:
            self.driver.delete_volume(vol)
        except self.exception.VolumeIsBusy as err:
            self.fail('Cinder could not delete a replicated volume that has '
                      'no Cinder snapshots: %s' % err)
        with self.assertRaises(Exception):
            self.daemon_volume(vol)
        members = vs.pg_members()
        if members is not None:
            self.assertNotIn(update['provider_id'], members)

    def test_delete_volume_with_snapshot_is_busy(self):
        vol, _ = self.create()
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.addCleanup(self.driver.delete_snapshot, snap)
        with self.assertRaises(self.exception.VolumeIsBusy):
            self.driver.delete_volume(vol)

    # ---- snapshots and clones -------------------------------------------

    def test_snapshot_clone_and_volume_from_snapshot(self):
        src, _ = self.create(vs.ASYNC_SPECS, size=1)
        snap = self.snapshot(src)
        update = self.driver.create_snapshot(snap)
        self.assertTrue(update.get('provider_id'))
        snap.update(update)

        from_snap = self.volume(vs.ASYNC_SPECS, size=2)
        update = self.driver.create_volume_from_snapshot(from_snap, snap)
        self.addCleanup(self.remove, from_snap)
        self.assertEqual('enabled', update['replication_status'])
        self.assertEqual(2, self.daemon_volume(from_snap).size_gb)

        clone = self.volume(None, size=1)
        update = self.driver.create_cloned_volume(clone, src)
        self.addCleanup(self.remove, clone)
        self.assertEqual('disabled', update['replication_status'])
        self.assertTrue(self.daemon_volume(clone).source)

        self.driver.delete_snapshot(snap)
        self.driver.delete_snapshot(snap)  # NOT_FOUND is success
        snaps = vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=src.id)).snapshots
        self.assertNotIn(snap.id, [s.id for s in snaps])

    # ---- snapshot_replicate ---------------------------------------------

    def test_snapshot_replicate_full_then_incremental(self):
        dest = vs.DEST_BACKEND
        if not dest:
            vs.skip('no VOLREP_DEST_BACKEND to replicate snapshots to')
        vol, _ = self.create(None)
        snaps = []
        for _ in range(2):
            snap = self.snapshot(vol)
            self.driver.create_snapshot(snap)
            self.addCleanup(self.driver.delete_snapshot, snap)
            snaps.append(snap)
        op = self.driver.snapshot_replicate(self.ctxt, snaps[0], dest)
        self.assertEqual('succeeded', op['state'])
        self.assertFalse(op['incremental'])
        op = self.driver.snapshot_replicate(self.ctxt, snaps[1], dest)
        self.assertEqual('succeeded', op['state'])
        self.assertTrue(op['incremental'])
        self.assertEqual(snaps[0].id, op['base_snapshot_id'])
        again = self.driver.snapshot_replicate(self.ctxt, snaps[1], dest)
        self.assertTrue(again['already_present'])
        v = self.driver.verify_snapshot(self.ctxt, snaps[1], dest)
        self.assertTrue(v['match'], v)
        self.assertEqual(-1, v['first_mismatch_offset'])

    def test_snapshot_replicate_to_an_unknown_backend(self):
        vol, _ = self.create(None)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.addCleanup(self.driver.delete_snapshot, snap)
        with self.assertRaises(self.exception.VolumeBackendAPIException) as c:
            self.driver.snapshot_replicate(self.ctxt, snap, 'no-such-backend')
        self.assertIn('INVALID_ARGUMENT', str(c.exception))
        self.assertIn('destination_backend', str(c.exception))

    # ---- attachments ----------------------------------------------------

    def test_initialize_and_terminate_connection(self):
        vol, _ = self.create()
        connector = {'host': 'compute-1', 'ip': '127.0.0.1',
                     'initiator': 'iqn.1993-08.org.debian:01:abc',
                     'multipath': False, 'platform': 'x86_64',
                     'os_type': 'linux2', 'do_local_attach': False}
        self.driver.validate_connector(connector)
        with self.assertRaises(self.exception.InvalidConnectorException):
            self.driver.validate_connector({'ip': '127.0.0.1'})
        info = self.driver.initialize_connection(vol, connector)
        self.assertEqual('nbd', info['driver_volume_type'])
        data = info['data']
        self.assertIsInstance(data['port'], int)
        self.assertIs(False, data['read_only'])
        self.assertEqual(vol.id, data['volume_id'])
        self.assertTrue(data['export_name'])
        self.assertEqual('nbd://%s:%d/%s' % (data['host'], data['port'],
                                              data['export_name']),
                         data['uri'])
        self.driver.terminate_connection(vol, connector)
        self.driver.terminate_connection(vol, None)  # force detach: all

        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.addCleanup(self.driver.delete_snapshot, snap)
        info = self.driver.initialize_connection_snapshot(snap, connector)
        self.assertIs(True, info['data']['read_only'])
        self.assertEqual(snap.id, info['data']['snapshot_id'])
        self.driver.terminate_connection_snapshot(snap, connector)

    # ---- retype ---------------------------------------------------------

    def test_retype_into_and_out_of_replication(self):
        vol, _ = self.create(None)
        to_async = {'id': vs.new_id(), 'name': 'async',
                    'extra_specs': dict(vs.ASYNC_SPECS)}
        ok, update = self.driver.retype(self.ctxt, vol, to_async, {}, {})
        self.assertTrue(ok)
        self.assertEqual({'replication_status': 'enabled',
                          'provider_id': 'volume-%s-cinder' % vol.id}, update)
        members = vs.pg_members()
        if members is not None:
            self.assertIn('volume-%s-cinder' % vol.id, members)

        plain = {'id': vs.new_id(), 'name': 'plain', 'extra_specs': {}}
        ok, update = self.driver.retype(self.ctxt, vol, plain, {}, {})
        self.assertTrue(ok)
        self.assertEqual('disabled', update['replication_status'])
        members = vs.pg_members()
        if members is not None:
            self.assertNotIn('volume-%s-cinder' % vol.id, members)

    def test_retype_to_a_type_the_backend_cannot_honour_asks_to_migrate(self):
        if any(t.type == 'sync' for t in vs.backend_info().replication_targets):
            vs.skip('this backend has a sync target')
        vol, _ = self.create(None)
        to_sync = {'id': vs.new_id(), 'name': 'sync',
                   'extra_specs': dict(vs.SYNC_SPECS)}
        self.assertEqual((False, None),
                         self.driver.retype(self.ctxt, vol, to_sync, {}, {}))

    # ---- provider info --------------------------------------------------

    def test_update_provider_info_fills_missing_provider_ids(self):
        vol, update = self.create(vs.ASYNC_SPECS)
        vol.provider_id = None
        other = self.volume()  # not on the backend
        other.provider_id = None
        vols, snaps = self.driver.update_provider_info([vol, other], [])
        self.assertEqual([{'id': vol.id,
                           'provider_id': update['provider_id']}], vols)
        self.assertIsNone(snaps)

    def test_list_follows_every_page(self):
        ids = [self.create()[0].id for _ in range(3)]
        backend = self.driver._backend
        first = vs.raw('ListVolumes', pb.ListVolumesRequest(
            backend=backend, page_size=1))
        self.assertEqual(1, len(first.volumes))
        self.assertTrue(first.next_page_token)
        # One item a page: every volume must still come back exactly once.
        self.driver._PAGE_SIZE = 1
        self.addCleanup(delattr, self.driver, '_PAGE_SIZE')
        got = [v.id for v in self.driver._list(
            'ListVolumes', pb.ListVolumesRequest(backend=backend), 'volumes')]
        self.assertEqual(sorted(set(got)), sorted(got))
        for vid in ids:
            self.assertIn(vid, got)


class TranslationTest(unittest.TestCase):
    """The pure translations, value by value."""

    def test_every_replication_status_is_a_cinder_one(self):
        from cinder.objects import fields
        from volrep_cinder import driver
        for value in pb.ReplicationStatus.values():
            got = driver.replication_status(value)
            if value == pb.REPLICATION_STATUS_UNSPECIFIED:
                self.assertIsNone(got)
            else:
                self.assertIn(got, fields.ReplicationStatus.ALL,
                              pb.ReplicationStatus.Name(value))
        self.assertEqual('failed-over', driver.replication_status(
            pb.REPLICATION_STATUS_FAILED_OVER))
        self.assertEqual('not-capable', driver.replication_status(
            pb.REPLICATION_STATUS_NOT_CAPABLE))

    def test_dial_address(self):
        from volrep_cinder.driver import dial_address
        self.assertEqual('127.0.0.1:7400', dial_address('0.0.0.0:7400'))
        self.assertEqual('127.0.0.1:7400', dial_address(':7400'))
        self.assertEqual('[::1]:7400', dial_address('[::]:7400'))
        self.assertEqual('10.0.0.5:7400', dial_address('10.0.0.5:7400'))

    def test_model_update_merges_metadata(self):
        from volrep_cinder.driver import model_update
        mu = pb.ModelUpdate(provider_id='p', metadata={'a': '1'},
                            replication_status=pb.REPLICATION_STATUS_ENABLED)
        self.assertEqual({'provider_id': 'p', 'replication_status': 'enabled',
                          'metadata': {'user': 'x', 'a': '1'}},
                         model_update(mu, {'user': 'x'}))
        self.assertEqual({}, model_update(pb.ModelUpdate()))


if __name__ == '__main__':
    unittest.main()
