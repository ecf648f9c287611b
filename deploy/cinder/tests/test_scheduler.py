"""get_volume_stats as Cinder's scheduler consumes it: a BackendState (the
scheduler's HostState) updated from the stats, and the CapabilitiesFilter
deciding for volume types."""

import unittest

from oslo_utils import timeutils

import volrep_support as vs
from volrep_support import pb


def setUpModule():
    vs.setup_cinder()


class StatsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        cls.driver = vs.make_driver()
        cls.driver.do_setup(context.get_admin_context())
        cls.driver.check_for_setup_error()
        cls.stats = cls.driver.get_volume_stats(refresh=True)
        cls.backend = vs.backend_info()

    def test_stats_keys(self):
        s = self.stats
        self.assertEqual(vs.backend_info().volume_backend_name,
                         s['volume_backend_name'])
        self.assertEqual('up', s['backend_state'])
        self.assertEqual('nbd', s['storage_protocol'])
        for key in ('vendor_name', 'driver_version'):
            self.assertIsInstance(s[key], str)
            self.assertTrue(s[key], key)
        for key in ('total_capacity_gb', 'free_capacity_gb',
                    'provisioned_capacity_gb', 'max_over_subscription_ratio'):
            self.assertIsInstance(s[key], float, key)
        self.assertGreater(s['total_capacity_gb'], 0)
        self.assertGreaterEqual(s['total_capacity_gb'], s['free_capacity_gb'])
        self.assertIsInstance(s['reserved_percentage'], int)
        for key in ('thin_provisioning_support', 'thick_provisioning_support',
                    'multiattach', 'replication_enabled',
                    'consistent_group_snapshot_enabled',
                    'consistent_group_replication_enabled'):
            self.assertIsInstance(s[key], bool, key)
        self.assertTrue(s['thin_provisioning_support'])
        targets = [t.backend_id for t in self.backend.replication_targets]
        types = sorted({t.type for t in self.backend.replication_targets})
        self.assertEqual(bool(targets), s['replication_enabled'])
        self.assertEqual(targets, s['replication_targets'])
        self.assertEqual(len(targets), s['replication_count'])
        self.assertEqual([types], s['replication_type'])

    def test_stats_are_cached_until_refresh(self):
        self.assertIs(self.driver.get_volume_stats(),
                      self.driver.get_volume_stats())

    def test_unreachable_daemon_reports_down(self):
        from cinder.volume import configuration
        configuration.CONF.set_override('volrep_address', '127.0.0.1:1',
                                        group=vs.EXPLICIT_GROUP)
        self.addCleanup(configuration.CONF.clear_override, 'volrep_address',
                        group=vs.EXPLICIT_GROUP)
        d = vs.make_driver(vs.EXPLICIT_GROUP)
        d._backend = vs.BACKEND  # as if it had been set up before
        s = d.get_volume_stats(refresh=True)
        self.assertEqual('down', s['backend_state'])
        self.assertEqual(0, s['free_capacity_gb'])
        self.assertIn('UNAVAILABLE', s['backend_state_reason'])
        self.assertIn('127.0.0.1:1', s['backend_state_reason'])


    def test_backend_down_at_setup_starts_and_reports_down(self):
        # The seed lab's typo: volrepd serves the backend but reports it
        # down. The driver starts anyway (Cinder never retries init_host),
        # and its stats say down with volrepd's reason until volrepd says up.
        from unittest import mock
        from cinder import context
        reason = ('cinder.conf:66: unknown key "bakend_id" in '
                  'replication_device of [%s]' % vs.BACKEND)
        d = vs.make_driver(vs.EXPLICIT_GROUP)
        d.do_setup(context.get_admin_context())
        real_call = d._call
        # volrepd's own record of the backend, as it would list it down.
        down = pb.Backend()
        down.CopyFrom(next(b for b in real_call(
            'ListBackends', pb.ListBackendsRequest()).backends
            if b.name == vs.BACKEND))
        down.up, down.reason = False, reason

        def call(method, request, **kwargs):
            if method == 'ListBackends':
                return pb.ListBackendsResponse(backends=[down])
            r = real_call(method, request, **kwargs)
            if method == 'GetVolumeStats' and not down.up:
                r.backend_state_up = False
                r.backend_state_reason = reason
            return r

        with mock.patch.object(d, '_call', side_effect=call):
            d.check_for_setup_error()  # does not raise
            s = d.get_volume_stats(refresh=True)
            self.assertEqual('down', s['backend_state'])
            self.assertIn('bakend_id', s['backend_state_reason'])
            down.up = True  # fixed and reloaded
            s = d.get_volume_stats(refresh=True)
            self.assertEqual('up', s['backend_state'])
            self.assertNotIn('backend_state_reason', s)


class CapabilitiesFilterTest(unittest.TestCase):
    """What cinder-scheduler does with the stats the manager sends it."""

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder.scheduler.filters import capabilities_filter
        from cinder.scheduler import host_manager
        driver = vs.make_driver()
        driver.do_setup(context.get_admin_context())
        stats = dict(driver.get_volume_stats(refresh=True))
        # The scheduler stamps what it receives.
        stats['timestamp'] = timeutils.utcnow()
        state = host_manager.BackendState('volrep-test@' + vs.BACKEND, None)
        state.update_from_volume_capability(stats)
        # Filters run on pools; a driver without pools gets one, named
        # after its volume_backend_name.
        cls.states = [state] + list(state.pools.values())
        cls.filter = capabilities_filter.CapabilitiesFilter()
        cls.types = {t.type for t in vs.backend_info().replication_targets}

    def passes(self, specs):
        props = {'resource_type': {'name': 't', 'extra_specs': specs},
                 'request_spec': {'volume_properties': {}}}
        got = {self.filter.backend_passes(s, props) for s in self.states}
        self.assertEqual(1, len(got), 'backend and pool disagree')
        return got.pop()

    def test_states(self):
        self.assertEqual(2, len(self.states))
        pool = self.states[1]
        self.assertEqual(vs.backend_info().volume_backend_name,
                         pool.pool_name)
        self.assertGreater(pool.total_capacity_gb, 0)

    def test_async_type_passes(self):
        if 'async' not in self.types:
            vs.skip('backend has no async target')
        self.assertTrue(self.passes(vs.ASYNC_SPECS))
        self.assertTrue(self.passes({
            'capabilities:replication_enabled': '<is> True',
            'capabilities:replication_type': '<in> async'}))

    def test_sync_type_does_not_pass_an_async_only_backend(self):
        if self.types != {'async'}:
            vs.skip('backend is not async-only')
        self.assertFalse(self.passes(vs.SYNC_SPECS))
        self.assertFalse(self.passes({
            'capabilities:replication_enabled': '<is> True',
            'capabilities:replication_type': '<in> sync'}))

    def test_why_replication_type_is_a_nested_list(self):
        # Cinder's <in> is `y in x`: against the string 'async' it is a
        # substring test, and 'sync' is in 'async'. The flat list that Pure
        # reports would let the sync type through:
        from cinder.scheduler.filters import extra_specs_ops
        self.assertTrue(extra_specs_ops.match('async', '<in> sync'))
        self.assertFalse(extra_specs_ops.match(['async'], '<in> sync'))

    def test_unreplicated_and_other_types(self):
        self.assertTrue(self.passes({}))
        self.assertTrue(self.passes({'volume_backend_name':
                                     vs.backend_info().volume_backend_name}))
        self.assertTrue(self.passes({'thin_provisioning_support':
                                     '<is> True'}))
        # A multiattach type: volrepd claims it (a LUN or export per host).
        self.assertTrue(self.passes({'multiattach': '<is> True'}))
        # QoS: the array enforces back-end qos_specs.
        self.assertTrue(self.passes({'QoS_support': '<is> True'}))
        # A type for a feature the stats do not claim.
        self.assertFalse(self.passes({'replication_count': '>= 5'}))


if __name__ == '__main__':
    unittest.main()
