"""iSCSI attachments: VolrepDriver's connection_info, read by os-brick's own
ISCSIConnector, against a real volrepd whose array serves iSCSI.

The backend is VOLREP_ISCSI_BACKEND (volrep_protocol unset on an array with
iscsi_listen, so iSCSI by default) and its array's portals are
VOLREP_ISCSI_PORTALS (comma-separated); VOLREP_ARRAY_ADDR is that array.
Nothing logs in: os-brick's iscsiadm calls go to a recorder, which shows
where os-brick puts what the driver returned."""

import os
import unittest

import grpc

import volrep_support as vs
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2  # noqa
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2_grpc  # noqa

ISCSI_BACKEND = os.environ.get('VOLREP_ISCSI_BACKEND', '')
PORTALS = [p for p in os.environ.get('VOLREP_ISCSI_PORTALS', '').split(',')
           if p]

INITIATOR = 'iqn.1993-08.org.debian:01:volrep-test-compute'


def setUpModule():
    vs.require_daemon()
    if not ISCSI_BACKEND or not PORTALS or not vs.ARRAY_ADDR:
        vs.skip('no iSCSI backend: set VOLREP_ISCSI_BACKEND, '
                'VOLREP_ISCSI_PORTALS and VOLREP_ARRAY_ADDR '
                '(e2e/cinder_driver_test.go does)')
    vs.setup_cinder()


class Recorder(object):
    """os-brick's execute: records each iscsiadm command and answers
    `iscsiadm -m session` with a session on the portal being logged in to,
    as if the login had worked."""

    def __init__(self):
        self.calls = []
        self.session = ''

    def __call__(self, *cmd, **kwargs):
        self.calls.append(cmd)
        if cmd[:3] == ('iscsiadm', '-m', 'session'):
            return self.session, ''
        return '', ''

    def updates(self, portal, iqn):
        """The node settings os-brick wrote for one portal and target."""
        out = {}
        for c in self.calls:
            if (c[:7] == ('iscsiadm', '-m', 'node', '-T', iqn, '-p', portal)
                    and c[7:10] == ('--op', 'update', '-n')):
                out[c[10]] = c[12]
        return out


class ISCSIConnectionTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from cinder import context
        from cinder import exception
        from cinder import objects
        from os_brick.initiator.connectors import iscsi
        cls.exception, cls.objects, cls.iscsi = exception, objects, iscsi
        cls.ctxt = context.get_admin_context()
        cls.driver = vs.make_driver(ISCSI_BACKEND)
        cls.driver.do_setup(cls.ctxt)
        cls.driver.check_for_setup_error()
        cls.hosts = host_service_pb2_grpc.HostServiceStub(
            grpc.insecure_channel(vs.ARRAY_ADDR))

    def host(self, name):
        return self.hosts.GetHost(
            host_service_pb2.GetHostRequest(name=name, include_secrets=True),
            timeout=30, metadata=vs.metadata(vs.ARRAY_TOKEN)).host

    def create(self):
        vol = self.objects.Volume(self.ctxt, id=vs.new_id(), _name_id=None,
                                  size=1, metadata={}, volume_type_id=None,
                                  volume_type=None)
        self.driver.create_volume(vol)
        self.addCleanup(self.driver.delete_volume, vol)
        return vol

    def connector(self, multipath):
        return {'host': 'volrep-test-compute', 'ip': '127.0.0.1',
                'initiator': INITIATOR, 'multipath': multipath,
                'platform': 'x86_64', 'os_type': 'linux2',
                'do_local_attach': False}

    def test_stats_say_iscsi(self):
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual('iSCSI', stats['storage_protocol'])
        # Over iSCSI the initiator is required.
        self.driver.validate_connector(self.connector(False))
        with self.assertRaises(self.exception.InvalidConnectorException):
            self.driver.validate_connector({'host': 'compute-1'})

    def test_multipath_attachment_as_os_brick_reads_it(self):
        vol = self.create()
        info = self.driver.initialize_connection(vol, self.connector(True))
        self.assertEqual('iscsi', info['driver_volume_type'])
        data = info['data']
        self.assertIs(False, data['target_discovered'])
        self.assertIs(True, data['discard'])
        self.assertEqual(vol.id, data['volume_id'])
        self.assertEqual('rw', data['access_mode'])
        self.assertIsInstance(data['target_lun'], int)
        self.assertEqual(PORTALS, data['target_portals'])
        # One target behind every portal, the LUN the same on each.
        self.assertEqual([data['target_iqn']] * len(PORTALS),
                         data['target_iqns'])
        self.assertEqual([data['target_lun']] * len(PORTALS),
                         data['target_luns'])
        self.assertTrue(data['target_iqn'].startswith('iqn.'))
        # The WWN as Pure's driver reports it: "3" and the NAA 6 designator.
        self.assertRegex(data['wwn'], '^36[0-9a-f]{31}$')

        # os-brick's own parsing finds every portal, IQN and LUN, without
        # a discovery.
        rec = Recorder()
        conn = self.iscsi.ISCSIConnector(None, execute=rec,
                                         use_multipath=True)
        want = [(p, data['target_iqn'], data['target_lun'])
                for p in PORTALS]
        self.assertEqual(want, conn._get_all_targets(data))
        self.assertEqual(want, conn._get_ips_iqns_luns(data, discover=False))

        # CHAP: the host the driver made for the initiator, whose
        # credentials os-brick writes to each node before logging in.
        host = self.host(data.get('auth_username'))
        self.assertEqual([INITIATOR], list(host.iqns))
        self.assertEqual('CHAP', data['auth_method'])
        self.assertEqual(host.chap_user, data['auth_username'])
        self.assertEqual(host.chap_secret, data['auth_password'])
        for props in conn._iterate_all_targets(data):
            rec.session = 'tcp: [7] %s,1 %s (non-flash)\n' % (
                props['target_portal'], props['target_iqn'])
            sid, _ = conn._connect_to_iscsi_portal(props)
            self.assertEqual('7', sid)
            self.assertEqual(
                {'node.session.auth.authmethod': 'CHAP',
                 'node.session.auth.username': host.chap_user,
                 'node.session.auth.password': host.chap_secret},
                {k: v for k, v in rec.updates(props['target_portal'],
                                               props['target_iqn']).items()
                 if k.startswith('node.session.auth.')})

        # Detaching the host's last volume deletes the host it made.
        self.driver.terminate_connection(vol, self.connector(True))
        with self.assertRaises(grpc.RpcError) as c:
            self.host(host.name)
        self.assertEqual(grpc.StatusCode.NOT_FOUND, c.exception.code())

    def test_single_path_and_snapshot(self):
        vol = self.create()
        info = self.driver.initialize_connection(vol, self.connector(False))
        data = info['data']
        self.assertNotIn('target_portals', data)
        self.assertIn(data['target_portal'], PORTALS)
        conn = self.iscsi.ISCSIConnector(None, execute=Recorder())
        self.assertEqual(
            [(data['target_portal'], data['target_iqn'], data['target_lun'])],
            conn._get_all_targets(data))

        snap = self.objects.Snapshot(self.ctxt, id=vs.new_id(),
                                     volume_id=vol.id, volume_size=1,
                                     metadata={})
        self.driver.create_snapshot(snap)
        self.addCleanup(self.driver.delete_snapshot, snap)
        sinfo = self.driver.initialize_connection_snapshot(
            snap, self.connector(False))
        sdata = sinfo['data']
        self.assertEqual('ro', sdata['access_mode'])
        self.assertEqual(data['target_iqn'], sdata['target_iqn'])
        # Another LUN of the same host, with an identity of its own.
        self.assertNotEqual(data['target_lun'], sdata['target_lun'])
        self.assertNotEqual(data['wwn'], sdata['wwn'])
        self.assertEqual(data['auth_username'], sdata['auth_username'])
        self.driver.terminate_connection_snapshot(snap, self.connector(False))
        # Force detach (no connector) disconnects the volume from every host.
        self.driver.terminate_connection(vol, None)
        with self.assertRaises(grpc.RpcError):
            self.host(data['auth_username'])


if __name__ == '__main__':
    unittest.main()
