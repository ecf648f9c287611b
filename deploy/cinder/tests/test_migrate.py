"""Volume migration through Cinder's own VolumeManager, against real volrepd:
migrate_volume between two volrep backends of the same volrepd (on two
arrays) is driver-assisted (MigrateVolume, snapshot deltas); any other
destination is left to Cinder's generic migration; retype to a type of the
other backend ends in the same driver migration."""

import configparser
import unittest

import grpc
from oslo_utils import timeutils

import volrep_support as vs
from volrep_support import pb
from volrep_cinder import driver as volrep_driver
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2 as vpb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2_grpc


def setUpModule():
    vs.require_daemon()
    if not vs.DEST_BACKEND or not vs.CONF_FILE or not vs.ARRAY_ADDR:
        vs.skip('migration needs VOLREP_DEST_BACKEND, VOLREP_CONF and '
                'VOLREP_ARRAY_ADDR (e2e/cinder_driver_test.go sets them)')
    vs.setup_database()


def volumes_api(addr, token):
    """An array's VolumeService."""
    return volume_service_pb2_grpc.VolumeServiceStub(
        grpc.insecure_channel(addr)), vs.metadata(token)


def dest_array():
    """The destination backend's array: san_ip and token of its section in
    the shared cinder.conf."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read(vs.CONF_FILE)
    sec = cp[vs.DEST_BACKEND]
    return volumes_api(sec['san_ip'], sec['pure_api_token'])


# A pattern that cannot be zeros or a repeat: 1 MiB of it.
PATTERN = bytes((i * 7 + i // 4096) % 251 for i in range(1 << 20))


class MigrateVolumeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import objects
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()
        cls.plain_type = vs.volume_type_in_db({})
        cls.async_type = vs.volume_type_in_db(vs.ASYNC_SPECS)
        # The destination as the scheduler hands it over: its host and the
        # capabilities its own driver reports.
        cls.dest = vs.make_driver(vs.DEST_BACKEND)
        cls.dest.do_setup(None)
        cls.dest.check_for_setup_error()
        caps = cls.dest.get_volume_stats(refresh=True)
        dest_host = 'volrep-test@' + vs.DEST_BACKEND
        cls.host = {'host': dest_host + '#' + caps['volume_backend_name'],
                    'capabilities': caps}
        cls.dest_type = vs.volume_type_in_db(
            {'volume_backend_name': caps['volume_backend_name']})
        # The destination's cinder-volume service: the manager reads its
        # availability zone when a driver migration succeeds.
        objects.Service(cls.ctxt, host=dest_host, binary='cinder-volume',
                        topic='cinder-volume', report_count=1,
                        availability_zone='nova',
                        updated_at=timeutils.utcnow()).create()

    def created(self, vtype=None):
        vol = vs.volume_in_db(vtype or self.plain_type)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        return vol

    def write_source(self, vol):
        stub, md = volumes_api(vs.ARRAY_ADDR, vs.ARRAY_TOKEN)
        for off in (0, 300 << 20):
            stub.WriteVolume(vpb.WriteVolumeRequest(
                name=vol.provider_id, offset=off, data=PATTERN),
                timeout=30, metadata=md)

    def assert_on_destination(self, vol):
        stub, md = dest_array()
        name = 'volume-%s-cinder' % vol.name_id
        v = stub.GetVolume(vpb.GetVolumeRequest(name=name), timeout=30,
                           metadata=md).volume
        self.assertFalse(v.read_only)
        for off in (0, 300 << 20):
            got = b''
            while len(got) < len(PATTERN):
                got += stub.ReadVolume(vpb.ReadVolumeRequest(
                    name=name, offset=off + len(got),
                    length=min(256 << 10, len(PATTERN) - len(got))),
                    timeout=30, metadata=md).data
            self.assertEqual(PATTERN, got, 'data at %d on the destination'
                             % off)
        with self.assertRaises(grpc.RpcError) as gone:
            vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                    volume_id=vol.id))
        self.assertEqual(grpc.StatusCode.NOT_FOUND, gone.exception.code())

    def test_migrate_to_another_volrep_backend(self):
        vol = self.created()
        self.write_source(vol)
        self.manager.migrate_volume(self.ctxt, vol, self.host, False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual(self.host['host'], vol.host)
        self.assertEqual('success', vol.migration_status)
        self.assertEqual('available', vol.status)
        self.assertEqual('volume-%s-cinder' % vol.id, vol.provider_id)
        self.assert_on_destination(vol)
        # It is a volume of the destination backend like any other.
        self.dest.extend_volume(vol, 2)
        self.dest.delete_volume(vol)

    def test_retype_to_the_other_backend_migrates(self):
        # The types differ only in volume_backend_name: the manager does
        # not ask the driver to retype (another backend), and its
        # migrate_volume uses the driver's migration.
        vol = self.created()
        self.write_source(vol)
        vol.status = 'retyping'
        vol.previous_status = 'available'
        vol.save()
        self.manager.retype(self.ctxt, vol, self.dest_type['id'], self.host,
                            migration_policy='on-demand')
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual(self.host['host'], vol.host)
        self.assertEqual(self.dest_type['id'], vol.volume_type_id)
        self.assertEqual('success', vol.migration_status)
        self.assertEqual('available', vol.status)
        self.assert_on_destination(vol)
        self.dest.delete_volume(vol)

    def test_other_destinations_fall_back_to_generic(self):
        vol = self.created()
        drv = self.manager.driver
        lvm = {'host': 'other@lvm#lvm', 'capabilities': {
            'volume_backend_name': 'lvm', 'vendor_name': 'Open Source'}}
        self.assertEqual((False, None),
                         drv.migrate_volume(self.ctxt, vol, lvm))
        other = dict(self.host['capabilities'], volrep_daemon_id='elsewhere')
        self.assertEqual((False, None), drv.migrate_volume(
            self.ctxt, vol, {'host': self.host['host'],
                             'capabilities': other}))
        vol.status = 'in-use'
        self.assertEqual((False, None),
                         drv.migrate_volume(self.ctxt, vol, self.host))
        vol.status = 'available'
        # The volume did not move.
        vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                volume_id=vol.id))

    def test_replicated_volume_falls_back_to_generic(self):
        # volrepd refuses (its replicas would stay behind): Cinder then
        # migrates generically, which refuses a replicated volume itself.
        vol = self.created(self.async_type)
        self.assertEqual((False, None), self.manager.driver.migrate_volume(
            self.ctxt, vol, self.host))
        vs.raw('GetVolume', pb.GetVolumeRequest(backend=vs.BACKEND,
                                                volume_id=vol.id))

    def test_update_migrated_volume_keeps_the_new_array_volume(self):
        vol = self.created()
        new = self.created()
        update = self.dest.update_migrated_volume(self.ctxt, vol, new,
                                                  'available')
        self.assertEqual(new.id, update['_name_id'])
        self.assertEqual(new.provider_id, update['provider_id'])
        # The driver then addresses the volume by that name_id.
        vol._name_id = new.id
        self.assertEqual(new.id, volrep_driver._volume_id(vol))
        same = self.dest.update_migrated_volume(self.ctxt, new, new,
                                                'available')
        self.assertIsNone(same['_name_id'])
