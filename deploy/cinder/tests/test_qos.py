"""QoS: a volume type's back-end qos_specs, through Cinder's own
VolumeManager against a real volrepd, become the array's limit on the
volume; a retype to another QoS changes it in place; an extend recomputes
the per-GB limits; the stats claim QoS_support."""

import unittest

import grpc

import volrep_support as vs
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2 as apb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2_grpc


def setUpModule():
    vs.setup_database()
    if not vs.ARRAY_ADDR:
        vs.skip('no VOLREP_ARRAY_ADDR: the limit cannot be checked')


def _array_qos(name):
    stub = volume_service_pb2_grpc.VolumeServiceStub(
        grpc.insecure_channel(vs.ARRAY_ADDR))
    return stub.GetVolume(apb.GetVolumeRequest(name=name), timeout=30,
                          metadata=vs.metadata(vs.ARRAY_TOKEN)).volume.qos


def _type_with_qos(consumer, specs):
    """A volume type associated with new QoS specs of consumer."""
    from cinder.volume import qos_specs
    ctxt = vs.admin_context()
    vtype = vs.volume_type_in_db({})
    body = dict(specs, consumer=consumer)
    qos = qos_specs.create(ctxt, 'qos-%s' % vs.new_id(), body)
    qos_specs.associate_qos_with_type(ctxt, qos['id'], vtype['id'])
    return vtype


class QoSTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import objects
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        cls.manager = vs.volume_manager()

    def _create(self, vtype, size=1):
        vol = vs.volume_in_db(vtype, size=size)
        self.manager.create_volume(self.ctxt, vol, allow_reschedule=False)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        return vol

    def _retype(self, vol, vtype):
        vol.status = 'retyping'
        vol.previous_status = 'available'
        vol.save()
        self.manager.retype(self.ctxt, vol, vtype['id'],
                            {'host': vol.host, 'cluster_name': None})
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def test_stats_claim_qos_support(self):
        stats = self.manager.driver.get_volume_stats(refresh=True)
        self.assertIs(True, stats['QoS_support'])

    def test_create_retype_and_extend_set_the_array_limit(self):
        gold = _type_with_qos('back-end', {'total_iops_sec': '500',
                                           'read_bytes_sec_per_gb': '1048576'})
        vol = self._create(gold, size=2)
        qos = _array_qos(vol.provider_id)
        self.assertEqual(500, qos.total_iops)
        self.assertEqual(2 << 20, qos.read_bytes_per_sec)

        # An extend recomputes the per-GB limit for the new size.
        vol.status = 'extending'
        vol.save()
        self.manager.extend_volume(self.ctxt, vol, 3, [])
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual(3, vol.size)
        self.assertEqual(3 << 20, _array_qos(vol.provider_id).read_bytes_per_sec)

        # Retype (in place, no migration) to a type with another QoS.
        silver = _type_with_qos('both', {'write_iops_sec': '200'})
        vol = self._retype(vol, silver)
        self.assertEqual(silver['id'], vol.volume_type_id)
        self.assertEqual('available', vol.status)
        qos = _array_qos(vol.provider_id)
        self.assertEqual(200, qos.write_iops)
        self.assertEqual(0, qos.total_iops)
        self.assertEqual(0, qos.read_bytes_per_sec)

        # A front-end QoS is Nova's to enforce: the array's limit goes.
        front = _type_with_qos('front-end', {'total_iops_sec': '100'})
        vol = self._retype(vol, front)
        self.assertEqual(front['id'], vol.volume_type_id)
        self.assertEqual(apb.QoS(), _array_qos(vol.provider_id))

    def test_an_unknown_qos_key_fails_the_create(self):
        bad = _type_with_qos('back-end', {'maxIOPS': '100'})
        vol = vs.volume_in_db(bad)
        with self.assertRaises(Exception) as cm:
            self.manager.create_volume(self.ctxt, vol,
                                       allow_reschedule=False)
        self.assertIn('qos_specs.maxIOPS', str(cm.exception))
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('error', vol.status)


if __name__ == '__main__':
    unittest.main()
