"""Cinder parity: manage_existing, unmanage and the manageable lists, for
volumes and snapshots, through Cinder's own VolumeManager against a real
volrepd, with the array volumes made and checked on the array's API."""

import unittest

import grpc

import volrep_support as vs
from volrep_cinder.gen.volrep.array.v1 import group_service_pb2
from volrep_cinder.gen.volrep.array.v1 import group_service_pb2_grpc
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2 as apb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2_grpc

GIB = 1 << 30
POOL = 'cinder'  # the demo backend's volrep_pool (the default)


def setUpModule():
    vs.setup_database()
    if not vs.ARRAY_ADDR:
        vs.skip('no VOLREP_ARRAY_ADDR: the array volumes cannot be made')


def _array():
    return volume_service_pb2_grpc.VolumeServiceStub(
        grpc.insecure_channel(vs.ARRAY_ADDR))


def _md():
    return vs.metadata(vs.ARRAY_TOKEN)


def _array_volume(name, size=GIB, data=None):
    """A volume made on the array directly, as an operator's tool would."""
    _array().CreateVolume(apb.CreateVolumeRequest(
        name=name, pool=POOL, size_bytes=size, labels={'app': 'legacy'}),
        timeout=30, metadata=_md())
    if data:
        _array().WriteVolume(apb.WriteVolumeRequest(
            name=name, offset=0, data=data, fua=True), timeout=30,
            metadata=_md())


def _get_volume(name):
    """The array volume, or None if the array has no such volume."""
    try:
        return _array().GetVolume(apb.GetVolumeRequest(name=name),
                                  timeout=30, metadata=_md()).volume
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def _read(name, length):
    return _array().ReadVolume(apb.ReadVolumeRequest(
        name=name, offset=0, length=length), timeout=30,
        metadata=_md()).data


def _snapshot_names(volume):
    return {s.name for s in _array().ListSnapshots(apb.ListSnapshotsRequest(
        volume=volume), timeout=30, metadata=_md()).snapshots}


class ManageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import exception
        from cinder import objects
        cls.exception = exception
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()
        cls.plain_type = vs.volume_type_in_db({})
        cls.async_type = vs.volume_type_in_db(vs.ASYNC_SPECS)

    def _managing(self, vtype):
        """A volume record as cinder.volume.api.API.manage_existing leaves
        it for the manager."""
        pool = vs.backend_info().volume_backend_name
        vol = self.objects.Volume(
            self.ctxt, size=0, host=vs.HOST + '#' + pool,
            volume_type_id=vtype['id'], status='managing',
            attach_status='detached', availability_zone='nova',
            project_id='project', user_id='user', display_name='managed')
        vol.create()
        return vol

    def _manage(self, ref, vtype=None):
        vol = self._managing(vtype or self.plain_type)
        self.manager.manage_existing(self.ctxt, vol, ref)
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def _refused(self, ref, *words):
        vol = self._managing(self.plain_type)
        with self.assertRaises(
                self.exception.ManageExistingInvalidReference) as cm:
            self.manager.manage_existing(self.ctxt, vol, ref)
        for w in words:
            self.assertIn(w, str(cm.exception))
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('error_managing', vol.status)
        return str(cm.exception)

    def _unmanage(self, vol):
        # What API.delete(unmanage_only=True) does before the manager.
        vol.status = 'unmanaging'
        vol.save()
        self.manager.delete_volume(self.ctxt, vol, unmanage_only=True)
        from cinder import context
        with self.assertRaises(self.exception.VolumeNotFound):
            self.objects.Volume.get_by_id(context.get_admin_context(),
                                          vol.id)

    def test_manage_unmanage_manage(self):
        name = 'legacy-' + vs.new_id()[:8]
        data = b'volrep manage ' * 600
        _array_volume(name, GIB + 4096, data)

        vol = self._manage({'source-name': name}, self.async_type)
        self.assertEqual('available', vol.status)
        self.assertEqual(2, vol.size)  # 1 GiB and a block, rounded up
        self.assertEqual('volume-%s-cinder' % vol.name_id, vol.provider_id)
        self.assertEqual('enabled', vol.replication_status)
        self.assertIsNone(_get_volume(name))
        av = _get_volume(vol.provider_id)
        self.assertEqual(2 * GIB, av.size_bytes)
        self.assertEqual(vol.id, av.labels['cinder.volume_id'])
        self.assertEqual('legacy', av.labels['app'])
        self.assertIn(vol.provider_id, vs.pg_members())
        self.assertEqual(data, _read(vol.provider_id, len(data)))

        # Already managed, by name or by provider id.
        for ref in ({'source-name': vol.provider_id},
                    {'source-id': vol.provider_id}):
            self._refused(ref, 'already managed', vol.id)

        self._unmanage(vol)
        left = vol.provider_id + '-unmanaged'
        av = _get_volume(left)
        self.assertIsNotNone(av, 'unmanage removed the array volume')
        self.assertNotIn('cinder.volume_id', av.labels)
        self.assertEqual('legacy', av.labels['app'])
        self.assertNotIn(left, vs.pg_members())
        self.assertNotIn(vol.provider_id, vs.pg_members())

        again = self._manage({'source-name': left})
        self.assertEqual('available', again.status)
        self.assertEqual('disabled', again.replication_status)
        self.assertEqual(data, _read(again.provider_id, len(data)))
        self._unmanage(again)

    def test_refusals(self):
        missing = 'ghost-' + vs.new_id()[:8]
        self._refused({'source-name': missing}, 'no array volume', missing)
        self._refused({'bogus': 'x'}, 'source-name')

        # A replica copy: a read-only replica target on the array.
        copy = 'copy-' + vs.new_id()[:8]
        _array_volume(copy)
        _array().SetVolumeReadOnly(apb.SetVolumeReadOnlyRequest(
            name=copy, read_only=True), timeout=30, metadata=_md())
        self._refused({'source-name': copy}, 'replica target')

        # In use by replication: a member of another backend's protection
        # group.
        theirs = 'theirs-' + vs.new_id()[:8]
        _array_volume(theirs)
        groups = group_service_pb2_grpc.ConsistencyGroupServiceStub(
            grpc.insecure_channel(vs.ARRAY_ADDR))
        pg = 'other-pg-' + vs.new_id()[:8]
        groups.CreateGroup(group_service_pb2.CreateGroupRequest(
            name=pg, pool=POOL), timeout=30, metadata=_md())
        groups.AddMembers(group_service_pb2.AddMembersRequest(
            name=pg, volumes=[theirs]), timeout=30, metadata=_md())
        self._refused({'source-name': theirs}, 'consistency group', pg)

        entries = {e['reference']['name']: e for e in
                   self.manager.get_manageable_volumes(
                       self.ctxt, None, 1000, 0, ['reference'], ['asc'])}
        for n in (copy, theirs):
            self.assertFalse(entries[n]['safe_to_manage'])
            self.assertTrue(entries[n]['reason_not_safe'])

    def test_manageable_volumes_paginate(self):
        prefix = 'page-' + vs.new_id()[:8]
        names = ['%s-%d' % (prefix, i) for i in range(4)]
        for i, n in enumerate(names):
            _array_volume(n, (i + 1) * GIB)

        def listing(marker=None, limit=1000, offset=0, key='reference',
                    direction='asc'):
            return self.manager.get_manageable_volumes(
                self.ctxt, marker, limit, offset, [key], [direction])

        full = listing()
        refs = [e['reference']['name'] for e in full]
        self.assertEqual(sorted(refs), refs)
        for i, n in enumerate(names):
            e = full[refs.index(n)]
            self.assertTrue(e['safe_to_manage'], e)
            self.assertIsNone(e['reason_not_safe'])
            self.assertIsNone(e['cinder_id'])
            self.assertEqual(i + 1, e['size'])
            self.assertIn('wwn', e['extra_info'])
        managed = self._manage({'source-name': names[0]})
        full = listing()
        refs = [e['reference']['name'] for e in full]
        self.assertNotIn(names[0], refs)
        mine = full[refs.index(managed.provider_id)]
        self.assertFalse(mine['safe_to_manage'])
        self.assertEqual(managed.id, mine['cinder_id'])

        # limit, offset, marker, as paginate_entries_list cuts the list;
        # the marker is names[1]'s entry.
        start = refs.index(names[2])
        self.assertEqual(names[1], refs[start - 1])
        self.assertEqual(full[start:start + 2],
                         listing(marker=full[start - 1]['reference'],
                                 limit=2))
        self.assertEqual(full[start + 1:start + 3],
                         listing(marker=full[start - 1]['reference'],
                                 limit=2, offset=1))
        self.assertEqual(full[1:3], listing(limit=2, offset=1))
        # Sorted by size, largest first: names[3] (4 GiB) before names[2].
        by_size = [e['reference']['name'] for e in
                   listing(key='size', direction='desc')]
        self.assertLess(by_size.index(names[3]), by_size.index(names[2]))
        self._unmanage(managed)

    def test_manage_snapshot(self):
        name = 'snapvol-' + vs.new_id()[:8]
        _array_volume(name, GIB, b'S' * 4096)
        vol = self._manage({'source-name': name})
        _array().CreateSnapshot(apb.CreateSnapshotRequest(
            volume=vol.provider_id, name='before-upgrade'), timeout=30,
            metadata=_md())

        entries = self.manager.get_manageable_snapshots(
            self.ctxt, None, 1000, 0, ['reference'], ['asc'])
        mine = [e for e in entries
                if e['source_reference'] == {'name': vol.provider_id}]
        self.assertEqual([{'name': 'before-upgrade'}],
                         [e['reference'] for e in mine])
        self.assertTrue(mine[0]['safe_to_manage'], mine[0])
        self.assertEqual(1, mine[0]['size'])

        snap = self.objects.Snapshot(
            self.ctxt, volume_id=vol.id, volume_size=vol.size,
            status='creating', project_id='project', user_id='user',
            volume_type_id=vol.volume_type_id)
        snap.create()
        self.manager.manage_existing_snapshot(
            self.ctxt, snap, {'source-name': 'before-upgrade'})
        snap = self.objects.Snapshot.get_by_id(self.ctxt, snap.id)
        self.assertEqual('available', snap.status)
        self.assertEqual('%s@snapshot-%s' % (vol.provider_id, snap.id),
                         snap.provider_id)
        self.assertEqual({'snapshot-' + snap.id},
                         _snapshot_names(vol.provider_id))

        # Unmanage: the array snapshot stays, under another name.
        snap.status = 'unmanaging'
        snap.save()
        self.manager.delete_snapshot(self.ctxt, snap, unmanage_only=True)
        self.assertEqual({'snapshot-%s-unmanaged' % snap.id},
                         _snapshot_names(vol.provider_id))
        entries = self.manager.get_manageable_snapshots(
            self.ctxt, None, 1000, 0, ['reference'], ['asc'])
        self.assertIn({'name': 'snapshot-%s-unmanaged' % snap.id},
                      [e['reference'] for e in entries
                       if e['source_reference']['name'] == vol.provider_id])


if __name__ == '__main__':
    unittest.main()
