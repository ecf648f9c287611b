"""A sync pod's volume over iSCSI, as os-brick reads its connection_info:
uniform access (the serving array's paths, then the peer's, one WWN, one
CHAP pair) and the preferred array volrep_host_preferred_arrays gives the
host the driver creates, against a real volrepd whose two arrays serve
iSCSI.

The backend is VOLREP_POD_BACKEND (a sync replication_device, and
volrep_host_preferred_arrays = compute-b*:<its backend_id>); the arrays'
portals are VOLREP_ISCSI_PORTALS (the primary, VOLREP_ARRAY_ADDR) and
VOLREP_POD_PEER_PORTALS (the sync target, VOLREP_ARRAY_B_ADDR with
VOLREP_ARRAY_B_TOKEN), each comma-separated. Nothing logs in: os-brick's
iscsiadm calls go to a recorder."""

import os
import unittest

import grpc

import volrep_support as vs
from test_iscsi import Recorder
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2  # noqa
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2_grpc  # noqa

POD_BACKEND = os.environ.get('VOLREP_POD_BACKEND', '')
PORTALS = [p for p in os.environ.get('VOLREP_ISCSI_PORTALS', '').split(',')
           if p]
PEER_PORTALS = [p for p in
                os.environ.get('VOLREP_POD_PEER_PORTALS', '').split(',') if p]
PEER_ADDR = os.environ.get('VOLREP_ARRAY_B_ADDR', '')
PEER_TOKEN = os.environ.get('VOLREP_ARRAY_B_TOKEN', '')

INITIATOR = 'iqn.1993-08.org.debian:01:volrep-test-compute-b1'


def setUpModule():
    vs.require_daemon()
    if not (POD_BACKEND and PORTALS and PEER_PORTALS and vs.ARRAY_ADDR
            and PEER_ADDR):
        vs.skip('no pod iSCSI backend: set VOLREP_POD_BACKEND, '
                'VOLREP_ISCSI_PORTALS, VOLREP_POD_PEER_PORTALS, '
                'VOLREP_ARRAY_ADDR and VOLREP_ARRAY_B_ADDR '
                '(e2e/cinder_driver_test.go does)')
    vs.setup_cinder()


class PodISCSITest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder import objects
        from os_brick.initiator.connectors import iscsi
        cls.objects, cls.iscsi = objects, iscsi
        cls.ctxt = context.get_admin_context()
        cls.driver = vs.make_driver(POD_BACKEND)
        cls.driver.do_setup(cls.ctxt)
        cls.driver.check_for_setup_error()
        cls.arrays = {
            'primary': (host_service_pb2_grpc.HostServiceStub(
                grpc.insecure_channel(vs.ARRAY_ADDR)), vs.ARRAY_TOKEN),
            'peer': (host_service_pb2_grpc.HostServiceStub(
                grpc.insecure_channel(PEER_ADDR)), PEER_TOKEN),
        }

    def host(self, side, name):
        stub, token = self.arrays[side]
        return stub.GetHost(
            host_service_pb2.GetHostRequest(name=name, include_secrets=True),
            timeout=30, metadata=vs.metadata(token)).host

    def connection(self, side, host):
        stub, token = self.arrays[side]
        conns = stub.ListConnections(
            host_service_pb2.ListConnectionsRequest(host=host), timeout=30,
            metadata=vs.metadata(token)).connections
        self.assertEqual(1, len(conns))
        return conns[0]

    def test_uniform_access_and_the_hosts_preferred_array(self):
        vtype = self.objects.VolumeType(self.ctxt, id=vs.new_id(),
                                        name='pod-%s' % vs.new_id(),
                                        extra_specs=dict(vs.SYNC_SPECS))
        vol = self.objects.Volume(self.ctxt, id=vs.new_id(), _name_id=None,
                                  size=1, metadata={},
                                  volume_type_id=vtype.id, volume_type=vtype)
        self.driver.create_volume(vol)
        self.addCleanup(self.driver.delete_volume, vol)
        connector = {'host': 'compute-b1', 'ip': '127.0.0.1',
                     'initiator': INITIATOR, 'multipath': True,
                     'platform': 'x86_64', 'os_type': 'linux2',
                     'do_local_attach': False}
        info = self.driver.initialize_connection(vol, connector)
        data = info['data']
        # The serving array's portals first, then the peer's: its own
        # target, and the LUN it gave the host there.
        self.assertEqual(PORTALS + PEER_PORTALS, data['target_portals'])
        iqns, luns = data['target_iqns'], data['target_luns']
        self.assertEqual(len(set(iqns[:len(PORTALS)])), 1)
        self.assertEqual(len(set(iqns[len(PORTALS):])), 1)
        self.assertNotEqual(iqns[0], iqns[-1])
        self.assertEqual((data['target_portal'], data['target_iqn'],
                          data['target_lun']), (PORTALS[0], iqns[0], luns[0]))
        self.assertRegex(data['wwn'], '^36[0-9a-f]{31}$')

        # os-brick logs in at every path, each with the one CHAP pair:
        # the hosts at both arrays have it, and prefer the peer (site-b's
        # backend_id in volrep_host_preferred_arrays, by the array's name).
        rec = Recorder()
        conn = self.iscsi.ISCSIConnector(None, execute=rec,
                                         use_multipath=True)
        self.assertEqual(list(zip(data['target_portals'], iqns, luns)),
                         conn._get_all_targets(data))
        hosts = {side: self.host(side, data['auth_username'])
                 for side in self.arrays}
        for side, h in hosts.items():
            self.assertEqual([INITIATOR], list(h.iqns), side)
            self.assertEqual(data['auth_password'], h.chap_secret, side)
            self.assertEqual(['site-b'], list(h.preferred_arrays), side)
        for props in conn._iterate_all_targets(data):
            rec.session = 'tcp: [7] %s,1 %s (non-flash)\n' % (
                props['target_portal'], props['target_iqn'])
            conn._connect_to_iscsi_portal(props)
            self.assertEqual(
                data['auth_password'],
                rec.updates(props['target_portal'], props['target_iqn'])
                ['node.session.auth.password'])

        # What each array tells the host: the peer's paths are the
        # optimized ones, once the pod takes writes there.
        def states():
            a = self.connection('primary', hosts['primary'].name)
            b = self.connection('peer', hosts['peer'].name)
            return (host_service_pb2.PathState.Name(a.path_state),
                    a.path_preferred,
                    host_service_pb2.PathState.Name(b.path_state),
                    b.path_preferred)
        want = ('PATH_STATE_ACTIVE_NON_OPTIMIZED', False,
                'PATH_STATE_ACTIVE_OPTIMIZED', True)
        vs.wait_for(lambda: states() == want,
                    'the peer optimized for compute-b1 (now %s)' % (states(),))

        # Detach: the hosts the setting matched go at both arrays.
        self.driver.terminate_connection(vol, connector)
        for side, h in hosts.items():
            with self.assertRaises(grpc.RpcError) as c:
                self.host(side, h.name)
            self.assertEqual(grpc.StatusCode.NOT_FOUND, c.exception.code(),
                             side)


if __name__ == '__main__':
    unittest.main()
