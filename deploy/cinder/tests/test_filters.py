"""VolrepReplicationTypeFilter as cinder-scheduler runs it: loaded by its
entry point from deploy/cinder, ahead of CapabilitiesFilter, on backend
states built from the real driver's stats."""

import unittest

from oslo_utils import timeutils

import volrep_support as vs

FILTERS = ['AvailabilityZoneFilter', 'CapacityFilter',
           'VolrepReplicationTypeFilter', 'CapabilitiesFilter']

WANT = ("replication_type '<in> asnyc' of volume type %s: \"asnyc\" is not "
        "a replication type; volrep accepts '<in> async' and '<in> sync'")


def setUpModule():
    vs.setup_database()


class ReplicationTypeFilterTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder.scheduler import host_manager
        from cinder import objects
        cls.objects = objects
        cls.ctxt = vs.admin_context()
        driver = vs.make_driver()
        driver.do_setup(context.get_admin_context())
        stats = dict(driver.get_volume_stats(refresh=True))
        stats['timestamp'] = timeutils.utcnow()
        cls.hm = host_manager.HostManager()
        volrep = host_manager.BackendState('volrep-test@' + vs.BACKEND, None)
        volrep.update_from_volume_capability(stats)
        # Another vendor's backend whose replication_type is a word volrep
        # does not know: the filter leaves it to CapabilitiesFilter.
        other = host_manager.BackendState('other@lvm', None)
        other.update_from_volume_capability(dict(
            stats, vendor_name='Open Source', volume_backend_name='lvm',
            replication_type=[['asnyc']], timestamp=timeutils.utcnow()))
        cls.volrep = list(volrep.pools.values())
        cls.other = list(other.pools.values())

    def schedule(self, specs, volume=None):
        """The pools the scheduler's filters leave for a volume (or, with
        no volume, for `cinder get-pools --filters volume_type=`)."""
        from cinder.volume import volume_types
        vtype = vs.volume_type_in_db(specs)
        vtype = volume_types.get_volume_type(self.ctxt, vtype['id'])
        props = {'context': self.ctxt, 'resource_type': vtype,
                 'volume_type': vtype, 'size': 1,
                 'request_spec': {'volume_properties': {'size': 1}}}
        if volume is not None:
            props['request_spec']['volume_id'] = volume.id
        got = self.hm.get_filtered_backends(self.volrep + self.other, props,
                                            FILTERS)
        return [p.host for p in got], vtype

    def test_the_entry_point_loads_it(self):
        self.assertIn('VolrepReplicationTypeFilter',
                      [c.__name__ for c in self.hm.filter_classes])

    def test_misspelt_type_is_refused_with_the_accepted_values(self):
        vol = vs.volume_in_db()
        hosts, vtype = self.schedule({'replication_enabled': '<is> True',
                                      'replication_type': '<in> asnyc'}, vol)
        self.assertEqual([self.other[0].host], hosts)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual(WANT % vtype['name'], vol.metadata['volrep_error'])

    def test_only_a_volume_being_created_gets_the_reason(self):
        vol = vs.volume_in_db()
        vol.status = 'available'  # a retype, say
        vol.metadata = {'mine': 'kept'}
        vol.save()
        hosts, _ = self.schedule({'replication_type': '<in> asnyc'}, vol)
        self.assertEqual([self.other[0].host], hosts)
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual({'mine': 'kept'}, vol.metadata)
        # Listing pools by type: no volume, nothing written, same verdict.
        hosts, _ = self.schedule({'replication_type': '<in> asnyc'})
        self.assertEqual([self.other[0].host], hosts)

    def test_known_types_pass_to_capabilities_filter(self):
        types = {t.type for t in vs.backend_info().replication_targets}
        for t in sorted(types):
            vol = vs.volume_in_db()
            hosts, _ = self.schedule({'replication_enabled': '<is> True',
                                      'replication_type': '<in> %s' % t}, vol)
            self.assertEqual([self.volrep[0].host], hosts, t)
            vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
            self.assertNotIn('volrep_error', vol.metadata)
        hosts, _ = self.schedule({})
        self.assertIn(self.volrep[0].host, hosts)

    def test_grammar(self):
        from volrep_cinder.filters import replication_type_problem as problem
        for ok in ('<in> async', '<in> sync', 'async', 's== sync',
                   '<or> async <or> sync'):
            self.assertIsNone(problem(ok), ok)
        for bad, why in (('<in> asnyc', '"asnyc" is not a replication type'),
                         ('<or> async <or> snyc',
                          '"snyc" is not a replication type'),
                         ('<in> async sync', '<in> takes exactly one value'),
                         ('<is> True', 'operator <is> does not apply'),
                         ('async <or> sync', 'operator'),
                         ('', 'it is empty')):
            self.assertIn(why, problem(bad) or '', bad)


if __name__ == '__main__':
    unittest.main()
