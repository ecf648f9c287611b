"""A cinder-scheduler filter that says why a volume type cannot go to volrep.

Cinder's CapabilitiesFilter passes a backend by when a volume type asks for
a capability value it does not report, and all the user is told is
"schedule allocate volume: Could not find any available weighted backend".
A misspelt replication_type ('<in> asnyc') ends that way with no word of
what is wrong. VolrepReplicationTypeFilter runs before it and, for a type
whose replication_type names values volrep does not know, keeps the volume
off volrep's backends (the scheduler then errors it as before, with its
user message), and says why where an operator looks:

- cinder-scheduler's log, at ERROR, with the accepted values;
- the volume's metadata key volrep_error, which `openstack volume show`
  prints under properties (Cinder's user messages only carry fixed texts,
  and a volume has no fault field).

The scheduler loads filters by entry point (namespace
cinder.scheduler.filters); volrep_cinder-*.dist-info next to this package
declares it, so having deploy/cinder on the scheduler's PYTHONPATH is
enough. Enable it ahead of CapabilitiesFilter, which would otherwise drop
the backend first:

    [DEFAULT]
    scheduler_default_filters = AvailabilityZoneFilter,CapacityFilter,
        VolrepReplicationTypeFilter,CapabilitiesFilter

Other vendors' backends pass it untouched: their replication_type may mean
something else.
"""

from oslo_log import log as logging

from cinder.scheduler import filters

LOG = logging.getLogger(__name__)

# What volrepd accepts (driver/extraspecs.ReplicationTypes), and the keys
# Cinder's CapabilitiesFilter reads the spec from.
ACCEPTED = ('async', 'sync')
SPEC_KEYS = ('replication_type', 'capabilities:replication_type')
# The volume metadata key the reason is written to.
METADATA_KEY = 'volrep_error'
# Cinder's limit on a metadata value.
_MAX_VALUE = 255
# Backends whose stats say this vendor (volrepd's GetVolumeStats).
VENDOR = 'volrep'


def replication_type_problem(raw):
    """Why a replication_type spec names no type volrep knows, or None.

    The grammar is the scheduler's: '<in> X', 's== X', '<or> X <or> Y' or
    a bare X; every X must be async or sync, as volrepd requires.
    """
    words = str(raw).split()
    if not words:
        return 'it is empty'
    op = words[0]
    if op in ('<in>', 's=='):
        if len(words) != 2:
            return '%s takes exactly one value' % op
        values = words[1:]
    elif op == '<or>':
        values = words[1::2]
        if any(w != '<or>' for w in words[0::2]):
            return 'alternatives must be separated by <or>'
        if not values:
            return '<or> needs at least one value'
    elif len(words) == 1 and not op.startswith('<'):
        values = words
    else:
        return 'operator %s does not apply to replication_type' % op
    for v in values:
        if v not in ACCEPTED:
            return '"%s" is not a replication type' % v
    return None


def type_problem(vtype):
    """(spec, why) for a volume type (dict or object) whose
    replication_type volrep cannot honour, else None."""
    specs = (vtype or {}).get('extra_specs') or {}
    for key in SPEC_KEYS:
        if key in specs:
            why = replication_type_problem(specs[key])
            if why:
                return specs[key], why
    return None


def is_volrep(backend_state):
    caps = getattr(backend_state, 'capabilities', None) or {}
    return caps.get('vendor_name') == VENDOR


def explain(vtype, spec, why):
    """The operator's message: what is wrong and the accepted values."""
    accepted = ' and '.join("'<in> %s'" % a for a in ACCEPTED)
    return ("replication_type '%(spec)s' of volume type %(name)s: %(why)s; "
            "volrep accepts %(accepted)s") % {
                'spec': spec, 'name': (vtype or {}).get('name') or '?',
                'why': why, 'accepted': accepted}


class VolrepReplicationTypeFilter(filters.BaseBackendFilter):
    """Keeps volumes of a type with an unknown replication_type off volrep
    backends, and says why (see the module's docstring)."""

    def backend_passes(self, backend_state, filter_properties):
        vtype = filter_properties.get('resource_type') or {}
        return not (is_volrep(backend_state) and type_problem(vtype))

    def filter_all(self, filter_obj_list, filter_properties):
        backends = list(filter_obj_list)
        vtype = filter_properties.get('resource_type') or {}
        problem = type_problem(vtype)
        refused = [b for b in backends if is_volrep(b)] if problem else []
        if not refused:
            return backends
        message = explain(vtype, *problem)
        spec = filter_properties.get('request_spec') or {}
        volume_id = spec.get('volume_id')
        if volume_id:
            LOG.error('Volume %(id)s cannot go to %(backends)s: %(msg)s. Fix '
                      'the type, e.g. openstack volume type set --property '
                      'replication_type=\'<in> async\' %(type)s',
                      {'id': volume_id, 'msg': message,
                       'backends': ', '.join(b.host for b in refused),
                       'type': vtype.get('name') or vtype.get('id')})
            record(filter_properties.get('context'), volume_id, message)
        else:
            # Pools listed by type (cinder get-pools --filters volume_type).
            LOG.debug('Not listing %(backends)s: %(msg)s',
                      {'backends': refused, 'msg': message})
        return [b for b in backends if b not in refused]


def record(context, volume_id, message):
    """Put the reason in the metadata of a volume being created, where
    `openstack volume show` prints it. Anything else (a retype, a
    migration) keeps its metadata as the user set it."""
    if context is None:
        return
    from cinder import objects
    try:
        volume = objects.Volume.get_by_id(context.elevated(), volume_id)
        if volume.status != 'creating':
            return
        metadata = dict(volume.metadata or {})
        metadata[METADATA_KEY] = message[:_MAX_VALUE]
        volume.metadata = metadata
        volume.save()
    except Exception:
        # The scheduler errors the volume anyway; the log has the reason.
        LOG.exception('Cannot record the reason in volume %s metadata',
                      volume_id)
