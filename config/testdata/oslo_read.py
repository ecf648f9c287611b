"""Read cinder.conf files as cinder-volume does, for config's differential test.

Usage: /usr/bin/python3 oslo_read.py FILE...  (PYTHONPATH must hold
deploy/cinder, for volrep's Cinder driver). Prints one JSON object a line:
first {"meta": ...}, the types of the options volrep checks as Cinder
registers them, then one object per FILE, in order:

  {"file": F, "parse_error": {"line": N, "message": M}}      oslo.config refused the file
  {"file": F, "enabled_backends": [...], "backends": [...], "volrep": {...}, "arrays": [...]}

Each backend is {"name", "values": {option: value}, "errors": [{"option",
"message"}]}: the values Cinder's driver gets (configuration.Configuration,
so [backend_defaults] applies as in cinder-volume), and the options whose
value oslo.config refused when read.

The options are Cinder's own lists, imported: the volume manager's and
VolumeDriver's (cinder.volume.manager, cinder.volume.driver), the SAN
driver's (san_ip), the Pure driver's (pure_*), and volrep's Cinder driver's
(volrep_*, and [volrep] driver_listen/driver_api_token). volrepd reads a
few keys that no Cinder code registers (volrep_sync_timeout, volrep_pool,
volrep_preferred_array, the rest of [volrep] and the [array:NAME]
sections); this script declares those itself, with the type volrepd gives
them, so that their text is read by the same parser.
"""

import json
import re
import sys

from cinder import objects

objects.register_all()

from oslo_config import cfg  # noqa: E402

from cinder.common import config as cinder_config  # noqa: E402
from cinder.volume import configuration  # noqa: E402
from cinder.volume import driver  # noqa: E402
from cinder.volume import manager  # noqa: E402
from cinder.volume.drivers import pure  # noqa: E402
from cinder.volume.drivers.san import san  # noqa: E402
from volrep_cinder import driver as volrep_driver  # noqa: E402

# What cinder-volume registers in a backend's group: the manager's options
# when it makes the Configuration, VolumeDriver.__init__'s lists, then the
# driver's own (the Pure driver's SAN and pure_* options; volrep's).
DRIVER_OPT_LISTS = [
    driver.volume_opts, driver.iser_opts, driver.nvmet_opts, driver.scst_opts,
    driver.backup_opts, driver.image_opts, driver.fqdn_opts,
    san.san_opts, pure.PURE_OPTS, volrep_driver.volrep_opts,
]

# Declared here: volrepd's own keys.
VOLREPD_BACKEND_OPTS = [
    cfg.IntOpt('volrep_sync_timeout'),
    cfg.StrOpt('volrep_pool'),
    cfg.StrOpt('volrep_preferred_array'),
]
VOLREPD_DAEMON_OPTS = [
    cfg.StrOpt('metrics_listen'),
    cfg.StrOpt('log_format'),
    cfg.StrOpt('log_level'),
    cfg.StrOpt('state_dir'),
]
ARRAY_OPTS = [
    cfg.StrOpt('data_dir'),
    cfg.StrOpt('listen'),
    cfg.StrOpt('api_token'),
    cfg.StrOpt('nbd_listen'),
    cfg.IntOpt('nbd_max_connections'),
    cfg.IntOpt('nbd_idle_timeout'),
    cfg.StrOpt('pools'),
]

BACKEND_KEYS = [
    'volume_backend_name', 'volume_driver', 'san_ip', 'pure_api_token',
    'replication_device', 'pure_replica_interval_default',
    'pure_replica_retention_short_term_default',
    'pure_replica_retention_long_term_per_day_default',
    'pure_replica_retention_long_term_default', 'pure_replication_pg_name',
    'pure_replication_pod_name', 'volrep_sync_timeout',
    'volrep_preferred_array', 'volrep_pool', 'volrep_failover_wait',
    'reserved_percentage', 'max_over_subscription_ratio',
]


def all_backend_opts():
    opts = {}
    for lst in [manager.volume_backend_opts] + DRIVER_OPT_LISTS:
        for o in lst:
            opts.setdefault(o.name, o)
    return opts


def meta(names):
    """The type of each option, as volrep's cinderOpts table has it."""
    opts = all_backend_opts()
    out = {}
    for name in names:
        o = opts.get(name)
        if o is None:
            out[name] = None
            continue
        t = o.type
        kind = type(o).__name__
        choices = getattr(t, 'choices', None)
        out[name] = {
            'kind': kind,
            'min': getattr(t, 'min', None),
            'max': getattr(t, 'max', None),
            'choices': [c for c in choices if c is not None] if choices else None,
        }
    return out


def get(read, name, errors):
    try:
        return read(name)
    except Exception as e:  # what Cinder would fail on when reading it
        errors.append({'option': name, 'message': '%s: %s' % (type(e).__name__, e)})
        return None


def read_file(path, cinder_keys):
    conf = cfg.ConfigOpts()
    # Cinder's Configuration registers options on its module's CONF.
    configuration.CONF = conf
    conf.register_opts(cinder_config.global_opts)
    conf.register_opts(volrep_driver.volrep_opts, group=configuration.SHARED_CONF_GROUP)
    conf.register_opts(volrep_driver.daemon_opts + VOLREPD_DAEMON_OPTS, group='volrep')
    try:
        with open(path, 'rb') as f:
            data = f.read()
        try:
            data.decode('utf-8')
        except UnicodeDecodeError as e:
            # Python's universal newlines, as the parser's lines.
            line = len(re.split(rb'\r\n|\r|\n', data[:e.start]))
            return {'parse_error': {'line': line, 'message': str(e)}}
        conf(['--config-file', path], project='cinder', default_config_files=[],
             default_config_dirs=[], use_env=False)
    except cfg.ConfigFileParseError as e:
        m = re.search(re.escape(path) + r':(\d+),', str(e))
        return {'parse_error': {'line': int(m.group(1)) if m else 0, 'message': str(e)}}

    out = {'enabled_backends': conf.enabled_backends, 'backends': [], 'arrays': []}
    for name in conf.enabled_backends or []:
        c = configuration.Configuration(manager.volume_backend_opts, config_group=name)
        for lst in DRIVER_OPT_LISTS + [VOLREPD_BACKEND_OPTS]:
            c.append_config_values(lst)
        errors = []
        # getattr, as the Pure driver reads its options: safe_get would
        # swallow the NoSuchOptError of a $reference to no option.
        values = {k: get(lambda n: getattr(c, n), k, errors) for k in BACKEND_KEYS + cinder_keys}
        out['backends'].append({'name': name, 'values': values, 'errors': errors})

    errors = []
    out['volrep'] = {
        'values': {o.name: get(lambda n: conf.volrep[n], o.name, errors)
                   for o in volrep_driver.daemon_opts + VOLREPD_DAEMON_OPTS},
        'errors': errors,
    }
    for section in conf.list_all_sections():
        group = section.lower()
        if not group.startswith('array:') or any(a['name'] == group for a in out['arrays']):
            continue
        conf.register_opts(ARRAY_OPTS, group=group)
        errors = []
        values = {o.name: get(lambda n: conf[group][n], o.name, errors) for o in ARRAY_OPTS}
        out['arrays'].append({'name': group, 'values': values, 'errors': errors})
    return out


def main():
    cinder_keys = json.loads(sys.stdin.readline())
    print(json.dumps({'meta': meta(cinder_keys)}))
    for path in sys.argv[1:]:
        res = read_file(path, cinder_keys)
        res['file'] = path
        print(json.dumps(res))


if __name__ == '__main__':
    main()
