"""What the tests share: a real volrepd, Cinder's configuration, a database.

The daemon is given by the environment (the Go test e2e/cinder_driver_test.go
starts one and sets these):

    VOLREP_BACKEND      the backend's section name (required)
    VOLREP_CONF         volrepd's configuration file; it is also loaded as
                        cinder.conf, as an operator would share one file
    VOLREP_ADDR         the driver API address (required without VOLREP_CONF)
    VOLREP_TOKEN        the driver API token, if the daemon wants one
    VOLREP_ARRAY_ADDR,  the primary array's API and token, to check on the
    VOLREP_ARRAY_TOKEN  array itself where volumes were put
    VOLREP_PG_NAME      the protection group (default cinder-group)
    VOLREP_DEST_BACKEND another backend of the same volrepd, to replicate
                        snapshots to (snapshot_replicate)
    VOLREP_LOG_FILE     where Cinder logs (default: stderr)

Cinder is configured once per process, as cinder-volume does: oslo.config
reads VOLREP_CONF (if given) and a small file of our own with an in-memory
sqlite database, oslo.messaging's fake driver and lock paths in a temporary
directory.
"""

import atexit
import os
import shutil
import sys
import tempfile
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# The driver first: it decides how grpc is imported (see _import_grpc).
from volrep_cinder import driver as _driver  # noqa: E402,F401
import grpc  # noqa: E402

from volrep_cinder.gen.volrep.array.v1 import group_service_pb2  # noqa: E402
from volrep_cinder.gen.volrep.array.v1 import group_service_pb2_grpc  # noqa
from volrep_cinder.gen.volrep.driver.v1 import driver_service_pb2 as pb  # noqa
from volrep_cinder.gen.volrep.driver.v1 import driver_service_pb2_grpc  # noqa

BACKEND = os.environ.get('VOLREP_BACKEND', '')
CONF_FILE = os.environ.get('VOLREP_CONF', '')
ADDR = os.environ.get('VOLREP_ADDR', '')
TOKEN = os.environ.get('VOLREP_TOKEN', '')
ARRAY_ADDR = os.environ.get('VOLREP_ARRAY_ADDR', '')
ARRAY_TOKEN = os.environ.get('VOLREP_ARRAY_TOKEN', '')
PG_NAME = os.environ.get('VOLREP_PG_NAME', 'cinder-group')
DEST_BACKEND = os.environ.get('VOLREP_DEST_BACKEND', '')

# A second backend section that names the daemon with volrep_address and
# volrep_token and finds the backend by volume_backend_name.
EXPLICIT_GROUP = 'volrep-explicit'

ASYNC_SPECS = {'replication_enabled': '<is> True',
               'replication_type': '<in> async'}
SYNC_SPECS = {'replication_enabled': '<is> True',
              'replication_type': '<in> sync'}

_state = {}


def skip(reason):
    """Skip the calling test (or class, from setUpClass), unless the run is
    `make test` (VOLREP_E2E_REQUIRE=1): there every test must run, so a
    missing precondition is a failure. Every skip in this suite goes here."""
    if os.environ.get('VOLREP_E2E_REQUIRE'):
        raise AssertionError('VOLREP_E2E_REQUIRE is set and this test would '
                             'skip: ' + reason)
    raise unittest.SkipTest('SKIPPED: ' + reason)


def require_daemon():
    """Skip (the whole module) when no daemon was given."""
    if not BACKEND or not (ADDR or CONF_FILE):
        skip('no volrepd: set VOLREP_BACKEND and VOLREP_ADDR (or VOLREP_CONF);'
             ' e2e/cinder_driver_test.go starts one and runs this suite')


def raw_stub():
    """A DriverService stub of our own, to check behind the driver's back."""
    if 'stub' not in _state:
        _state['stub'] = driver_service_pb2_grpc.DriverServiceStub(
            grpc.insecure_channel(ADDR))
    return _state['stub']


def metadata(token=TOKEN):
    return (('authorization', 'Bearer ' + token),) if token else ()


def raw(method, request):
    return getattr(raw_stub(), method)(request, timeout=30,
                                       metadata=metadata())


def backend_info():
    for b in raw('ListBackends', pb.ListBackendsRequest()).backends:
        if b.name == BACKEND:
            return b
    raise AssertionError('volrepd serves no backend %s' % BACKEND)


def pg_members():
    """The protection group's members, read from the primary array."""
    if not ARRAY_ADDR:
        return None
    stub = group_service_pb2_grpc.ConsistencyGroupServiceStub(
        grpc.insecure_channel(ARRAY_ADDR))
    r = stub.GetGroup(group_service_pb2.GetGroupRequest(name=PG_NAME),
                      timeout=30, metadata=metadata(ARRAY_TOKEN))
    return list(r.group.members)


def array_group(name):
    """A consistency group on the primary array (a Cinder group is
    consisgroup-<id>-cinder): the group message, False if the array has no
    such group, None when VOLREP_ARRAY_ADDR is not given."""
    if not ARRAY_ADDR:
        return None
    stub = group_service_pb2_grpc.ConsistencyGroupServiceStub(
        grpc.insecure_channel(ARRAY_ADDR))
    try:
        return stub.GetGroup(group_service_pb2.GetGroupRequest(name=name),
                             timeout=30, metadata=metadata(ARRAY_TOKEN)).group
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise


def setup_cinder():
    """Configure Cinder once: config files, objects, database, messaging."""
    if 'conf' in _state:
        return _state['conf']
    require_daemon()
    global ADDR
    tmp = tempfile.mkdtemp(prefix='volrep-cinder-')
    atexit.register(shutil.rmtree, tmp, True)
    if not ADDR:
        ADDR = _listen_from(CONF_FILE)
    vbn = backend_info().volume_backend_name

    lines = ['[DEFAULT]',
             'transport_url = fake:/',
             'host = volrep-test',
             'state_path = %s' % tmp,
             # Cinder's and the manager's file locks.
             'lock_path = %s' % tmp]
    if os.environ.get('VOLREP_LOG_FILE'):
        # Cinder logs expected failures with tracebacks; keep them apart.
        lines.append('log_file = %s' % os.environ['VOLREP_LOG_FILE'])
    if not CONF_FILE:
        lines += ['enabled_backends = %s' % BACKEND, '',
                  '[%s]' % BACKEND,
                  'volume_driver = volrep_cinder.driver.VolrepDriver',
                  'volume_backend_name = %s' % vbn,
                  'volrep_address = %s' % ADDR]
        if TOKEN:
            lines.append('volrep_token = %s' % TOKEN)
    lines += ['', '[database]', 'connection = sqlite://',
              '', '[oslo_concurrency]', 'lock_path = %s' % tmp,
              '', '[coordination]', 'backend_url = file://%s' % tmp,
              # oslo.messaging's metrics thread would hold the exit 60s.
              '', '[oslo_messaging_metrics]',
              'metrics_thread_stop_timeout = 1',
              '', '[%s]' % EXPLICIT_GROUP,
              'volume_driver = volrep_cinder.driver.VolrepDriver',
              'volume_backend_name = %s' % vbn,
              'volrep_address = %s' % ADDR,
              'volrep_timeout = 30']
    if TOKEN:
        lines.append('volrep_token = %s' % TOKEN)
    ours = os.path.join(tmp, 'test.conf')
    with open(ours, 'w') as f:
        f.write('\n'.join(lines) + '\n')

    from oslo_config import cfg
    from oslo_log import log as logging

    from cinder.common import config  # noqa: F401 (registers options)
    from cinder import objects
    objects.register_all()
    import cinder.volume.manager  # noqa: F401 (registers the volume options)

    files = ([CONF_FILE] if CONF_FILE else []) + [ours]
    conf = cfg.CONF
    logging.register_options(conf)
    conf([], project='cinder', default_config_files=files)
    conf.set_override('debug', bool(os.environ.get('VOLREP_DEBUG')))
    logging.setup(conf, 'cinder')
    _state.update(conf=conf, files=files, tmp=tmp)
    return conf


def _listen_from(path):
    """[volrep] driver_listen of volrepd's file, as the driver reads it."""
    import configparser
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.read(path)
    listen = p.get('volrep', 'driver_listen', fallback='127.0.0.1:7400')
    from volrep_cinder.driver import dial_address
    return dial_address(listen)


def setup_database():
    """Create the schema in the in-memory sqlite database (oslo.db keeps
    one connection for sqlite://, so it lives as long as the process) and
    start oslo.messaging (fake driver) and the coordinator."""
    setup_cinder()
    if 'db' in _state:
        return
    from cinder import coordination
    from cinder.db import migration
    from cinder import rpc
    migration.db_sync()
    rpc.init(_state['conf'])
    coordination.COORDINATOR.start()
    _state['db'] = True


def make_driver(group=None):
    """A VolrepDriver built as cinder-volume builds it, not set up."""
    setup_cinder()
    from cinder.volume import configuration
    from cinder.volume import manager
    from volrep_cinder import driver
    conf = configuration.Configuration(manager.volume_backend_opts,
                                       config_group=group or BACKEND)
    return driver.VolrepDriver(configuration=conf, host='volrep-test@' +
                               (group or BACKEND))


def wait_for(cond, what, timeout=30.0):
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %.0fs waiting for %s' %
                                 (timeout, what))
        time.sleep(0.2)


def admin_context():
    """An admin request context with a project, as the API would pass on
    (Cinder's user messages about failures need one)."""
    from cinder import context
    return context.RequestContext('user', 'project', is_admin=True)


def new_id():
    return str(uuid.uuid4())


HOST = 'volrep-test@%s' % BACKEND


def volume_manager():
    """Cinder's VolumeManager for the backend, as cinder-volume runs it:
    the driver comes from volume_driver in the backend's section, init_host
    calls do_setup and check_for_setup_error. Needs setup_database()."""
    if 'manager' in _state:
        return _state['manager']
    setup_database()
    from oslo_utils import timeutils

    from cinder import context
    from cinder import objects
    from cinder.volume import manager
    ctxt = context.get_admin_context()
    service = objects.Service(ctxt, host=HOST, binary='cinder-volume',
                              topic='cinder-volume', report_count=1,
                              updated_at=timeutils.utcnow(),
                              **service_versions())
    service.create()
    m = manager.VolumeManager(host=HOST, service_name=BACKEND)
    m.init_host(added_to_cluster=False, service_id=service.id)
    _state['manager'] = m
    return m


def service_versions():
    """The RPC and object versions cinder-volume records in its service
    row at start: Cinder's RPC clients (VolumeAPI, as a clustered
    failover's fan-out builds) refuse a service without them."""
    from cinder.objects import base
    from cinder.volume import manager
    return {'rpc_current_version': manager.VolumeManager.RPC_API_VERSION,
            'object_current_version': base.OBJ_VERSIONS.get_current()}


def volume_type_in_db(specs, name=None):
    from cinder import context
    from cinder.volume import volume_types
    return volume_types.create(context.get_admin_context(),
                               name or 'type-%s' % new_id(), specs)


def volume_in_db(vtype=None, size=1):
    """A volume record as the scheduler leaves it for the manager."""
    from cinder import context
    from cinder import objects
    ctxt = context.get_admin_context()
    pool = backend_info().volume_backend_name
    vol = objects.Volume(ctxt, size=size, host=HOST + '#' + pool,
                         volume_type_id=vtype['id'] if vtype else None,
                         status='creating', attach_status='detached',
                         availability_zone='nova', project_id='project',
                         user_id='user', display_name='test')
    vol.create()
    return vol
