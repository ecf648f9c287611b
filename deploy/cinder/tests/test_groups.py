"""Generic volume groups through Cinder's VolumeManager: create_group,
update_group, create_group_snapshot, create_group_from_src, delete_group
and the replication group calls (enable/disable/failover_replication), as
cinder-volume runs them on the records Cinder's API would have written,
checked in the database, on volrepd (ListSnapshots, GetVolume,
GetReplicationInfo) and on the primary array (its consistency groups)."""

import unittest

import volrep_support as vs
from volrep_support import pb

CG_SPECS = {'consistent_group_snapshot_enabled': '<is> True'}
REPLICATION_GROUP_SPECS = {'consistent_group_replication_enabled': '<is> True'}


def setUpModule():
    vs.setup_database()


def cg_name(group):
    return 'consisgroup-%s-cinder' % group.id


class GroupTestBase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import exception
        from cinder import objects
        cls.exception, cls.objects = exception, objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()
        cls.driver = cls.manager.driver
        cls.pool = vs.backend_info().volume_backend_name
        cls.plain_type = vs.volume_type_in_db({})
        cls.async_type = vs.volume_type_in_db(vs.ASYNC_SPECS)

    # ---- records, as Cinder's API writes them -------------------------------

    def group_type(self, specs):
        from cinder import context
        from cinder.volume import group_types
        return group_types.create(context.get_admin_context(),
                                  'group-type-%s' % vs.new_id(), specs)

    def group_in_db(self, gtype, vtypes, **source):
        g = self.objects.Group(
            self.ctxt, user_id='user', project_id='project',
            host='%s#%s' % (vs.HOST, self.pool), availability_zone='nova',
            name='group', group_type_id=gtype['id'],
            volume_type_ids=[t['id'] for t in vtypes], status='creating',
            replication_status='disabled', **source)
        g.create(**source)
        return g

    def create_group(self, gtype, vtypes):
        g = self.group_in_db(gtype, vtypes)
        self.manager.create_group(self.ctxt, g)
        g = self.group(g)
        self.assertEqual('available', g.status)
        self.addCleanup(self.delete_group_if_there, g)
        return g

    def volume_in_group(self, group, vtype, **fields):
        vol = vs.volume_in_db(vtype)
        vol.update(dict(group_id=group.id if group else None, **fields))
        vol.save()
        return vol

    def create_volume(self, vtype, group=None, **fields):
        vol = self.volume_in_group(group, vtype, **fields)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.volume(vol)
        self.assertEqual('available', vol.status)
        return vol

    def group_snapshot_in_db(self, group):
        gs = self.objects.GroupSnapshot(
            self.ctxt, group_id=group.id, user_id='user',
            project_id='project', status='creating', name='gs',
            group_type_id=group.group_type_id)
        gs.create()
        for vol in self.members(group):
            self.objects.Snapshot(
                self.ctxt, volume_id=vol.id, group_snapshot_id=gs.id,
                volume_size=vol.size, status='creating',
                project_id='project', user_id='user',
                volume_type_id=vol.volume_type_id).create()
        return gs

    # ---- reading back ---------------------------------------------------

    def group(self, g):
        return self.objects.Group.get_by_id(self.ctxt, g.id)

    def volume(self, vol):
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def members(self, group):
        return self.objects.VolumeList.get_all_by_generic_group(self.ctxt,
                                                                group.id)

    def snapshots_of(self, gs):
        return self.objects.SnapshotList.get_all_for_group_snapshot(
            self.ctxt, gs.id)

    def array_snapshot_ids(self, vol):
        return [s.id for s in vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=vol.id)).snapshots]

    def on_daemon(self, vol):
        try:
            vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                    volume_id=vol.id))
            return True
        except vs.grpc.RpcError as err:
            if err.code() == vs.grpc.StatusCode.NOT_FOUND:
                return False
            raise

    def assert_array_group(self, group, exists=True):
        g = vs.array_group(cg_name(group))
        if g is None:
            return None  # no VOLREP_ARRAY_ADDR: nothing to check there
        if exists:
            self.assertTrue(g, '%s is not on the array' % cg_name(group))
        else:
            self.assertFalse(g, '%s is still on the array' % cg_name(group))
        return g

    # ---- deleting ---------------------------------------------------------

    def delete_group(self, group):
        group = self.group(group)
        vols = list(self.members(group))
        group.status = 'deleting'
        group.save()
        for vol in vols:
            vol.status = 'deleting'
            vol.save()
        self.manager.delete_group(self.ctxt, group)
        with self.assertRaises(self.exception.GroupNotFound):
            self.group(group)
        for vol in vols:
            with self.assertRaises(self.exception.VolumeNotFound):
                self.volume(vol)
            self.assertFalse(self.on_daemon(vol),
                             'volume %s outlives its group' % vol.id)
        return vols

    def delete_group_if_there(self, group):
        """Cleanup: whatever a failed test left, so that the suite's later
        tests (a whole-backend failover) do not meet it."""
        try:
            group = self.group(group)
        except self.exception.GroupNotFound:
            return
        for gs in self.objects.GroupSnapshotList.get_all_by_group(
                self.ctxt, group.id):
            gs.status = 'deleting'
            gs.save()
            self.manager.delete_group_snapshot(self.ctxt, gs)
        try:
            self.manager.delete_group(self.ctxt, group)
        except Exception as err:
            print('cleanup: group %s: %s' % (group.id, err))


class ConsistentGroupTest(GroupTestBase):
    """A group of a consistent group snapshot type is volrepd's."""

    def test_group_snapshot_and_groups_from_it(self):
        gtype = self.group_type(CG_SPECS)
        g = self.create_group(gtype, [self.plain_type, self.async_type])
        self.assertEqual('not-capable', g.replication_status)
        self.assert_array_group(g)

        # Volumes created in the group, and one added and one removed.
        v1 = self.create_volume(self.plain_type, g)
        v2 = self.create_volume(self.async_type, g)
        v3 = self.create_volume(self.plain_type)
        self.manager.update_group(self.ctxt, g, add_volumes=v3.id,
                                  remove_volumes=v1.id)
        self.assertEqual('available', self.group(g).status)
        self.assertEqual(g.id, self.volume(v3).group_id)
        self.assertIsNone(self.volume(v1).group_id)
        self.assertEqual({v2.id, v3.id}, {v.id for v in self.members(g)})
        # v1 is on its own now; Cinder deletes it as any volume.
        v1 = self.volume(v1)
        v1.status = 'deleting'
        v1.save()
        self.manager.delete_volume(self.ctxt, v1)
        self.assertFalse(self.on_daemon(v1))

        # The group snapshot: snapshot-<group snapshot id> of each member.
        gs = self.group_snapshot_in_db(g)
        self.manager.create_group_snapshot(self.ctxt, gs)
        gs = self.objects.GroupSnapshot.get_by_id(self.ctxt, gs.id)
        self.assertEqual('available', gs.status)
        snaps = self.snapshots_of(gs)
        self.assertEqual({v2.id, v3.id}, {s.volume_id for s in snaps})
        for snap in snaps:
            self.assertEqual('available', snap.status)
            self.assertEqual('volume-%s-cinder@snapshot-%s' %
                             (snap.volume_id, gs.id), snap.provider_id)
            self.assertIn(gs.id, self.array_snapshot_ids(
                self.objects.Volume.get_by_id(self.ctxt, snap.volume_id)))
            # Cinder's own id for the member is not an array snapshot.
            self.assertNotIn(snap.id, self.array_snapshot_ids(
                self.objects.Volume.get_by_id(self.ctxt, snap.volume_id)))

        # A volume from one member, through the snapshot's Cinder id.
        member = [s for s in snaps if s.volume_id == v3.id][0]
        clone = self.create_volume(self.plain_type, snapshot_id=member.id)
        self.assertTrue(self.on_daemon(clone))

        # A group from the group snapshot.
        g2 = self.group_in_db(gtype, [self.plain_type, self.async_type],
                              group_snapshot_id=gs.id)
        self.addCleanup(self.delete_group_if_there, g2)
        for snap in snaps:
            self.volume_in_group(g2, None, snapshot_id=snap.id,
                                 volume_type_id=snap.volume_type_id)
        self.manager.create_group_from_src(self.ctxt, g2, group_snapshot=gs)
        g2 = self.group(g2)
        self.assertEqual('available', g2.status)
        self.assert_array_group(g2)
        self.assertEqual(2, len(self.members(g2)))
        for vol in self.members(g2):
            self.assertEqual('available', vol.status)
            self.assertEqual('volume-%s-cinder' % vol.id, vol.provider_id)
            self.assertTrue(self.on_daemon(vol))
            # Replicated as its type asks, as the source was.
            self.assertEqual('enabled' if vol.volume_type_id ==
                             self.async_type['id'] else 'disabled',
                             vol.replication_status)

        # A group from the group: cloned from a temporary group snapshot,
        # which does not stay.
        g3 = self.group_in_db(gtype, [self.plain_type, self.async_type],
                              source_group_id=g.id)
        self.addCleanup(self.delete_group_if_there, g3)
        sources = list(self.members(g))
        for src in sources:
            self.volume_in_group(g3, None, source_volid=src.id,
                                 volume_type_id=src.volume_type_id)
        self.manager.create_group_from_src(self.ctxt, g3, source_group=g)
        g3 = self.group(g3)
        self.assertEqual('available', g3.status)
        self.assertEqual(2, len(self.members(g3)))
        for vol in self.members(g3):
            self.assertEqual('available', vol.status)
            self.assertTrue(self.on_daemon(vol))
            self.assertEqual('enabled' if vol.volume_type_id ==
                             self.async_type['id'] else 'disabled',
                             vol.replication_status)
        for src in sources:
            self.assertEqual([gs.id], self.array_snapshot_ids(src))

        # Away again: the group snapshot, then the groups with their
        # volumes.
        clone.status = 'deleting'
        clone.save()
        self.manager.delete_volume(self.ctxt, clone)
        gs.status = 'deleting'
        gs.save()
        self.manager.delete_group_snapshot(self.ctxt, gs)
        with self.assertRaises(self.exception.GroupSnapshotNotFound):
            self.objects.GroupSnapshot.get_by_id(self.ctxt, gs.id)
        self.assertEqual(0, len(self.snapshots_of(gs)))
        for src in sources:
            self.assertEqual([], self.array_snapshot_ids(src))
        for group in (g2, g3, g):
            self.delete_group(group)
            self.assert_array_group(group, exists=False)

    def test_migrated_volume_is_addressed_by_its_name_id(self):
        # After a migration Cinder's record keeps its id but the array
        # volume carries the copy's id (name_id): group and snapshot calls
        # must send the name_id and answer with the record's ids.
        gtype = self.group_type(CG_SPECS)
        g = self.create_group(gtype, [self.plain_type])
        on_array = self.create_volume(self.plain_type)
        migrated = vs.volume_in_db(self.plain_type)
        migrated.update({'_name_id': on_array.id, 'status': 'available',
                         'provider_id': on_array.provider_id})
        migrated.save()
        # Before: "is not a volume of backend" (the record's id was sent).
        self.manager.update_group(self.ctxt, g, add_volumes=migrated.id)
        self.assertEqual('available', self.group(g).status)
        self.assertEqual([migrated.id], [v.id for v in self.members(g)])
        gs = self.group_snapshot_in_db(g)
        self.manager.create_group_snapshot(self.ctxt, gs)
        gs = self.objects.GroupSnapshot.get_by_id(self.ctxt, gs.id)
        self.assertEqual('available', gs.status)
        self.assertEqual([gs.id],
                         self.array_snapshot_ids(on_array))
        self.manager.delete_group_snapshot(self.ctxt, gs)
        self.assertEqual([], self.array_snapshot_ids(on_array))
        model, updates = self.driver.delete_group(self.ctxt, self.group(g),
                                                  [self.volume(migrated)])
        self.assertEqual([(migrated.id, 'deleted')],
                         [(u['id'], u['status']) for u in updates])
        self.assertFalse(self.on_daemon(on_array))
        migrated.destroy()
        on_array.destroy()

    def test_refusals_are_cinder_exceptions(self):
        gtype = self.group_type(CG_SPECS)
        g = self.create_group(gtype, [self.plain_type])
        # A volume volrepd does not have cannot join.
        ghost = vs.volume_in_db(self.plain_type)
        self.addCleanup(ghost.destroy)
        with self.assertRaises(self.exception.InvalidInput) as cm:
            self.driver.update_group(self.ctxt, g, add_volumes=[ghost])
        self.assertIn('is not a volume of backend', str(cm.exception))
        # Only a replication group type replicates.
        with self.assertRaises(self.exception.InvalidGroupType):
            self.driver.enable_replication(self.ctxt, g, [])
        # volrepd refuses to delete a group whose volume has a snapshot
        # (Cinder's API checks its own snapshots first; this one it does
        # not know), before it deletes anything: the group is in error,
        # its volumes are as they were.
        vol = self.create_volume(self.plain_type, g)
        snap_id = vs.new_id()
        vs.raw('CreateSnapshot', pb.CreateSnapshotRequest(
            backend=vs.BACKEND, snapshot_id=snap_id, volume_id=vol.id))
        with self.assertRaises(self.exception.VolumeDriverException):
            self.manager.delete_group(self.ctxt, self.group(g))
        self.assertEqual('error', self.group(g).status)
        self.assertEqual('available', self.volume(vol).status)
        self.assertTrue(self.on_daemon(vol))
        vs.raw('DeleteSnapshot', pb.DeleteSnapshotRequest(
            backend=vs.BACKEND, snapshot_id=snap_id, volume_id=vol.id))
        self.delete_group(g)

    def test_group_volrepd_does_not_know_yet_is_created_on_first_use(self):
        # A group Cinder created while the driver left groups to Cinder's
        # generic code has no consistency group on the array.
        gtype = self.group_type(CG_SPECS)
        g = self.group_in_db(gtype, [self.plain_type])
        g.status = 'available'
        g.save()
        self.addCleanup(self.delete_group_if_there, g)
        self.assert_array_group(g, exists=False)
        vol = self.create_volume(self.plain_type, g)
        self.assert_array_group(g)
        gs = self.group_snapshot_in_db(g)
        self.manager.create_group_snapshot(self.ctxt, gs)
        self.assertEqual([gs.id], self.array_snapshot_ids(vol))
        gs = self.objects.GroupSnapshot.get_by_id(self.ctxt, gs.id)
        gs.status = 'deleting'
        gs.save()
        self.manager.delete_group_snapshot(self.ctxt, gs)
        self.assertEqual([], self.array_snapshot_ids(vol))
        self.delete_group(g)


class GenericGroupTest(GroupTestBase):
    """A group of any other type is left to Cinder's generic code."""

    def test_plain_group_type_uses_cinders_generic_groups(self):
        gtype = self.group_type({})
        g0 = self.group_in_db(gtype, [self.plain_type])
        self.addCleanup(g0.destroy)
        with self.assertRaises(NotImplementedError):
            self.driver.create_group(self.ctxt, g0)
        g = self.create_group(gtype, [self.plain_type])
        self.assert_array_group(g, exists=False)
        # The volume is created without the group, which volrepd does not
        # have.
        v1 = self.create_volume(self.plain_type, g)
        self.assertEqual(g.id, v1.group_id)
        gs = self.group_snapshot_in_db(g)
        self.manager.create_group_snapshot(self.ctxt, gs)
        (snap,) = self.snapshots_of(gs)
        self.assertEqual('available', snap.status)
        # One snapshot at a time, by its own id.
        self.assertEqual('volume-%s-cinder@snapshot-%s' % (v1.id, snap.id),
                         snap.provider_id)
        self.assertEqual([snap.id], self.array_snapshot_ids(v1))
        gs = self.objects.GroupSnapshot.get_by_id(self.ctxt, gs.id)
        gs.status = 'deleting'
        gs.save()
        self.manager.delete_group_snapshot(self.ctxt, gs)
        self.assertEqual([], self.array_snapshot_ids(v1))
        self.delete_group(g)


class ReplicationGroupTest(GroupTestBase):
    """Consistent group replication: the group becomes a protection group
    of its own, fails over to the async target and back."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        targets = [t.backend_id for t in vs.backend_info().replication_targets
                   if t.type == 'async']
        if not targets:
            vs.skip(
                'backend %s has no async replication_device, so no '
                'consistent group replication' % vs.BACKEND)
        cls.target = targets[0]

    def set_replication_status(self, group, status):
        """What Cinder's group API does before it casts to the manager."""
        group = self.group(group)
        for vol in self.members(group):
            vol.replication_status = status
            vol.save()
        group.replication_status = status
        group.save()
        return group

    def group_replica_reached_target(self, group, vols):
        prefix = cg_name(group) + '.'
        for vol in vols:
            info = vs.raw('GetReplicationInfo', pb.GetReplicationInfoRequest(
                backend=vs.BACKEND, volume_id=vol.id))
            if not any(t.backend_id == self.target and
                       t.last_snapshot.startswith(prefix)
                       for t in info.targets):
                return False
        return True

    def fail_back_if_needed(self, group):
        """Cleanup: a group a failed test left failed over comes home."""
        try:
            group = self.group(group)
        except self.exception.GroupNotFound:
            return
        try:
            self.driver.failover_replication(self.ctxt, group,
                                             list(self.members(group)),
                                             'default')
        except self.exception.CinderException:
            pass  # not failed over

    def test_enable_failover_failback_disable(self):
        gtype = self.group_type(REPLICATION_GROUP_SPECS)
        g = self.create_group(gtype, [self.async_type])
        self.addCleanup(self.fail_back_if_needed, g)
        self.assertEqual('disabled', g.replication_status)
        self.assert_array_group(g)
        v1 = self.create_volume(self.async_type, g)
        v2 = self.create_volume(self.async_type, g)
        self.assertEqual('enabled', v1.replication_status)
        pg = vs.pg_members()
        if pg is not None:
            self.assertIn(v1.provider_id, pg)

        g = self.set_replication_status(g, 'enabling')
        self.manager.enable_replication(self.ctxt, g)
        g = self.group(g)
        self.assertEqual('available', g.status)
        self.assertEqual('enabled', g.replication_status)
        for vol in (v1, v2):
            vol = self.volume(vol)
            self.assertEqual('enabled', vol.replication_status)
            self.assertEqual('volume-%s-cinder' % vol.id, vol.provider_id)
        # The members moved from the backend's protection group to the
        # group's.
        cg = self.assert_array_group(g)
        if cg is not None:
            self.assertEqual(sorted([v1.provider_id, v2.provider_id]),
                             sorted(cg.members))
            self.assertNotIn(v1.provider_id, vs.pg_members())
        # A volume created in the replicating group joins it, and so does
        # a clone created in it.
        v3 = self.create_volume(self.async_type, g)
        v4 = self.create_volume(self.async_type, g, source_volid=v2.id)
        cg = self.assert_array_group(g)
        if cg is not None:
            self.assertIn(v3.provider_id, cg.members)
            self.assertIn(v4.provider_id, cg.members)
        vols = [v1, v2, v3, v4]

        # A target that is not a replication_device is refused, with
        # nothing changed.
        with self.assertRaises(self.exception.InvalidReplicationTarget):
            self.driver.failover_replication(self.ctxt, g, vols, 'nowhere')

        vs.wait_for(lambda: self.group_replica_reached_target(g, vols),
                    'a group snapshot of every member on %s' % self.target,
                    timeout=60)
        g = self.set_replication_status(g, 'failing-over')
        self.manager.failover_replication(self.ctxt, g,
                                          secondary_backend_id=self.target)
        g = self.group(g)
        self.assertEqual('available', g.status)
        self.assertEqual('failed-over', g.replication_status)
        for vol in vols:
            vol = self.volume(vol)
            self.assertEqual('available', vol.status)
            self.assertEqual('failed-over', vol.replication_status)
        # A failed-over member attaches at the target.
        info = self.driver.initialize_connection(self.volume(v1),
                                                 {'host': 'compute-1'})
        self.assertEqual('nbd', info['driver_volume_type'])
        self.driver.terminate_connection(self.volume(v1),
                                         {'host': 'compute-1'})

        g = self.set_replication_status(g, 'failing-over')
        self.manager.failover_replication(self.ctxt, g,
                                          secondary_backend_id='default')
        g = self.group(g)
        self.assertEqual('enabled', g.replication_status)
        for vol in vols:
            self.assertEqual('enabled', self.volume(vol).replication_status)

        g = self.set_replication_status(g, 'disabling')
        self.manager.disable_replication(self.ctxt, g)
        g = self.group(g)
        self.assertEqual('available', g.status)
        self.assertEqual('disabled', g.replication_status)
        # Back in the backend's protection group.
        pg = vs.pg_members()
        if pg is not None:
            for vol in vols:
                self.assertIn(self.volume(vol).provider_id, pg)
            self.assertEqual([], list(self.assert_array_group(g).members))

        self.delete_group(g)
        self.assert_array_group(g, exists=False)


if __name__ == '__main__':
    unittest.main()
