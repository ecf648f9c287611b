"""Cinder parity: revert_to_snapshot and online extend, through Cinder's own
VolumeManager against a real volrepd, checking the data on the array."""

import unittest

import grpc

import volrep_support as vs
from volrep_support import pb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2 as apb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2_grpc


def setUpModule():
    vs.setup_database()
    if not vs.ARRAY_ADDR:
        vs.skip('no VOLREP_ARRAY_ADDR: the data cannot be checked')


def _array():
    return volume_service_pb2_grpc.VolumeServiceStub(
        grpc.insecure_channel(vs.ARRAY_ADDR))


def _write(name, offset, data):
    _array().WriteVolume(apb.WriteVolumeRequest(
        name=name, offset=offset, data=data, fua=True), timeout=30,
        metadata=vs.metadata(vs.ARRAY_TOKEN))


def _read(name, offset, length):
    return _array().ReadVolume(apb.ReadVolumeRequest(
        name=name, offset=offset, length=length), timeout=30,
        metadata=vs.metadata(vs.ARRAY_TOKEN)).data


class RevertAndExtendTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import objects
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()
        cls.plain_type = vs.volume_type_in_db({})

    def _volume(self):
        vol = vs.volume_in_db(self.plain_type)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        return vol

    def _snapshot(self, vol):
        snap = self.objects.Snapshot(self.ctxt, volume_id=vol.id,
                                     volume_size=vol.size, status='creating',
                                     project_id='project', user_id='user',
                                     volume_type_id=vol.volume_type_id)
        snap.create()
        self.manager.create_snapshot(self.ctxt, snap)
        return self.objects.Snapshot.get_by_id(self.ctxt, snap.id)

    def _revert(self, vol, snap):
        # What cinder.volume.api.API.revert_to_snapshot does before it
        # casts to the manager.
        vol.status = 'reverting'
        vol.save()
        snap.status = 'restoring'
        snap.save()
        self.manager.revert_to_snapshot(self.ctxt, vol, snap)
        return (self.objects.Volume.get_by_id(self.ctxt, vol.id),
                self.objects.Snapshot.get_by_id(self.ctxt, snap.id))

    def test_revert_to_snapshot(self):
        vol = self._volume()
        a, b = b'A' * 8192, b'B' * 4096
        _write(vol.provider_id, 0, a)
        snap = self._snapshot(vol)
        self.assertEqual('available', snap.status)
        _write(vol.provider_id, 0, b)
        _write(vol.provider_id, 1 << 20, b)
        self.assertEqual(b, _read(vol.provider_id, 0, 4096))

        vol, snap = self._revert(vol, snap)
        self.assertEqual('available', vol.status)
        self.assertEqual('available', snap.status)
        self.assertEqual(a, _read(vol.provider_id, 0, 8192))
        self.assertEqual(b'\0' * 4096, _read(vol.provider_id, 1 << 20, 4096))
        # The manager's backup snapshot (taken before the revert, so the
        # one reverted to was not the newest on the array) is deleted.
        ids = [s.id for s in vs.raw('ListSnapshots', pb.ListSnapshotsRequest(
            backend=vs.BACKEND, volume_id=vol.id)).snapshots]
        self.assertEqual([snap.id], ids)

    def test_revert_refused_after_extend(self):
        # Cinder's API refuses this (the sizes differ); the array refuses
        # it too, and the manager records the error.
        vol = self._volume()
        snap = self._snapshot(vol)
        vol.status = 'extending'
        vol.save()
        self.manager.extend_volume(self.ctxt, vol, 2, [])
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        with self.assertRaises(Exception) as cm:
            self._revert(vol, snap)
        self.assertIn('extended since', str(cm.exception))
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        snap = self.objects.Snapshot.get_by_id(self.ctxt, snap.id)
        self.assertEqual('error', vol.status)
        self.assertEqual('available', snap.status)

    def test_online_extend_of_an_attached_volume(self):
        from unittest import mock
        stats = self.manager.driver.get_volume_stats(refresh=True)
        self.assertIs(True, stats['online_extend_support'])

        vol = self._volume()
        a = b'A' * 4096
        _write(vol.provider_id, 0, a)
        att = self.objects.VolumeAttachment(
            self.ctxt, volume_id=vol.id, instance_uuid=vs.new_id(),
            attach_status='attached', attached_host='compute-1')
        att.create()
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        vol.status = 'extending'
        vol.save()
        # The manager tells Nova about an in-use volume that grew; there is
        # no Nova here, so that one call is recorded instead.
        with mock.patch('cinder.compute.nova.API.extend_volume') as nova:
            self.manager.extend_volume(self.ctxt, vol, 3, [])
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('in-use', vol.status)
        self.assertEqual(3, vol.size)
        nova.assert_called_once()
        self.assertEqual([att.instance_uuid], nova.call_args[0][1])
        self.assertEqual(3, vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.size_gb)
        self.assertEqual(a, _read(vol.provider_id, 0, 4096))
        # The new range is there and reads as zeros.
        self.assertEqual(b'\0' * 4096,
                         _read(vol.provider_id, (3 << 30) - 4096, 4096))
