"""Images without a kernel initiator: copy_image_to_volume and
copy_volume_to_image write and read the volume with qemu-img over its own
NBD or iSCSI export, through Cinder's VolumeManager and image_utils against
a real volrepd.

The images are real qcow2 and raw files made with qemu-img and qemu-io,
served by FileImages, a small image service of our own (Cinder's
show/download/update, backed by files; Debian does not package Cinder's
fake image service). What the volume holds is read back over an NBD export
made on the array itself (ExportService, not the driver), and compared
with `qemu-img compare`.

NBD is backend VOLREP_BACKEND (volrep_protocol = nbd); iSCSI is
VOLREP_ISCSI_BACKEND, whose connections carry CHAP.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest
import uuid
from unittest import mock

import grpc

import volrep_support as vs
from volrep_support import pb
from volrep_cinder.gen.volrep.array.v1 import export_service_pb2 as epb
from volrep_cinder.gen.volrep.array.v1 import export_service_pb2_grpc
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2 as hpb
from volrep_cinder.gen.volrep.array.v1 import host_service_pb2_grpc
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2 as apb
from volrep_cinder.gen.volrep.array.v1 import volume_service_pb2_grpc

ISCSI_BACKEND = os.environ.get('VOLREP_ISCSI_BACKEND', '')
MIB, GIB = 1 << 20, 1 << 30
READER = 'volrep-test-image-reader'


def setUpModule():
    vs.setup_database()
    if not vs.ARRAY_ADDR:
        vs.skip('no VOLREP_ARRAY_ADDR: the volumes cannot be read back')
    for tool in ('qemu-img', 'qemu-io'):
        if not shutil.which(tool):
            vs.skip('%s is missing; `make deps` installs qemu-utils' % tool)


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise AssertionError('%s: exit %d\n%s%s' % (' '.join(cmd),
                                                   r.returncode, r.stdout,
                                                   r.stderr))
    return r.stdout


def qemu_img_info(path):
    return json.loads(run('qemu-img', 'info', '--output=json', path))


def _channel():
    return grpc.insecure_channel(vs.ARRAY_ADDR)


def array_volume(name):
    return volume_service_pb2_grpc.VolumeServiceStub(_channel()).GetVolume(
        apb.GetVolumeRequest(name=name), timeout=30,
        metadata=vs.metadata(vs.ARRAY_TOKEN)).volume


def write_array(name, offset, data):
    volume_service_pb2_grpc.VolumeServiceStub(_channel()).WriteVolume(
        apb.WriteVolumeRequest(name=name, offset=offset, data=data, fua=True),
        timeout=30, metadata=vs.metadata(vs.ARRAY_TOKEN))


def exports_of(name):
    return list(export_service_pb2_grpc.ExportServiceStub(
        _channel()).ListExports(epb.ListExportsRequest(volume=name),
                                timeout=30,
                                metadata=vs.metadata(vs.ARRAY_TOKEN)).exports)


def array_hosts():
    return list(host_service_pb2_grpc.HostServiceStub(_channel()).ListHosts(
        hpb.ListHostsRequest(), timeout=30,
        metadata=vs.metadata(vs.ARRAY_TOKEN)).hosts)


class ReadBack(object):
    """An NBD export of a volume made on the array, not by the driver: the
    URI to read the volume with, whichever protocol the backend attaches
    with (the array serves both)."""

    def __init__(self, name):
        self.name = name
        self.stub = export_service_pb2_grpc.ExportServiceStub(_channel())

    def __enter__(self):
        e = self.stub.CreateExport(epb.CreateExportRequest(
            volume=self.name, attachment_id=READER), timeout=30,
            metadata=vs.metadata(vs.ARRAY_TOKEN)).export
        host = e.host
        if host in ('', '0.0.0.0', '::'):
            host = vs.ARRAY_ADDR.rpartition(':')[0]
        return 'nbd://%s:%d/%s' % (host, e.port, e.name)

    def __exit__(self, *exc):
        self.stub.DeleteExport(epb.DeleteExportRequest(
            volume=self.name, attachment_id=READER), timeout=30,
            metadata=vs.metadata(vs.ARRAY_TOKEN))


class FileImages(object):
    """Cinder's image service interface (what its flows call: show,
    get_location, download, update) over files in a directory."""

    def __init__(self, root):
        self.root = root
        self.meta = {}
        # image_utils.TemporaryImages hangs itself here, as on Glance's.
        self.temp_images = None
        self.downloads = 0

    def add(self, path, disk_format, copy=True):
        image_id = str(uuid.uuid4())
        dest = os.path.join(self.root, image_id)
        if copy:
            shutil.copyfile(path, dest)
        else:
            open(dest, 'wb').close()
        self.meta[image_id] = {
            'id': image_id, 'name': 'test-' + image_id[:8],
            'disk_format': disk_format, 'container_format': 'bare',
            'status': 'active' if copy else 'queued',
            'size': os.path.getsize(dest), 'min_disk': 0, 'min_ram': 0,
            'checksum': None, 'owner': 'project', 'visibility': 'private',
            'protected': False, 'properties': {}}
        return image_id

    def path(self, image_id):
        return os.path.join(self.root, image_id)

    def show(self, context, image_id):
        from cinder import exception
        if image_id not in self.meta:
            raise exception.ImageNotFound(image_id=image_id)
        return dict(self.meta[image_id])

    def get_location(self, context, image_id):
        return None, None

    def download(self, context, image_id, data=None):
        self.downloads += 1
        with open(self.path(image_id), 'rb') as f:
            if data is None:
                return iter(lambda: f.read(MIB), b'')
            shutil.copyfileobj(f, data)

    def update(self, context, image_id, image_meta, data=None,
               purge_props=True, store_id=None, base_image_ref=None):
        if data is not None:
            # Sparse, as Glance's file store would not be: a raw upload of
            # a thin 1 GiB volume is mostly zeros.
            with open(self.path(image_id), 'wb') as f:
                for chunk in iter(lambda: data.read(MIB), b''):
                    if chunk.count(0) == len(chunk):
                        f.seek(len(chunk), os.SEEK_CUR)
                    else:
                        f.write(chunk)
                f.truncate()
            self.meta[image_id].update(status='active',
                                       size=os.path.getsize(
                                           self.path(image_id)))
        self.meta[image_id].update(image_meta or {})
        return dict(self.meta[image_id])

    def delete(self, context, image_id):
        self.meta.pop(image_id, None)


def make_images(d):
    """The test images: a 1 GiB qcow2 holding 1 MiB of 0xab at 0 and
    64 KiB of 0xcd at 5 MiB; an 8 MiB raw file with 512 KiB of 0x5a at
    3 MiB; a 2 GiB qcow2 (larger than a 1 GiB volume)."""
    qcow2 = os.path.join(d, 'img.qcow2')
    run('qemu-img', 'create', '-f', 'qcow2', qcow2, '1G')
    run('qemu-io', '-f', 'qcow2', qcow2, '-c', 'write -P 0xab 0 1M',
        '-c', 'write -P 0xcd 5M 64k')
    raw = os.path.join(d, 'img.raw')
    run('qemu-img', 'create', '-f', 'raw', raw, '8M')
    run('qemu-io', '-f', 'raw', raw, '-c', 'write -P 0x5a 3M 512k')
    big = os.path.join(d, 'big.qcow2')
    run('qemu-img', 'create', '-f', 'qcow2', big, '2G')
    run('qemu-io', '-f', 'qcow2', big, '-c', 'write -P 0x11 1536M 4k')
    return qcow2, raw, big


class ImagesTest(unittest.TestCase):
    """Shared by the NBD (through the VolumeManager) and iSCSI tests."""

    @classmethod
    def setUpClass(cls):
        from cinder import exception
        from cinder import objects
        cls.exception, cls.objects = exception, objects
        cls.ctxt = vs.admin_context()
        cls.dir = tempfile.mkdtemp(prefix='volrep-images-')
        cls.images = FileImages(cls.dir)
        cls.qcow2, cls.raw, cls.big = make_images(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def assertSame(self, image, fmt, volume_name):
        """The volume holds the image (and zeros after it)."""
        with ReadBack(volume_name) as uri:
            out = run('qemu-img', 'compare', '-f', fmt, '-F', 'raw', image,
                      uri)
        self.assertIn('Images are identical', out)

    def assertDiffers(self, image, fmt, volume_name):
        with ReadBack(volume_name) as uri:
            r = subprocess.run(('qemu-img', 'compare', '-f', fmt, '-F', 'raw',
                                image, uri), capture_output=True, text=True,
                               timeout=300)
        # 1: the images differ (2 would be an error).
        self.assertEqual(1, r.returncode, r.stdout + r.stderr)

    def assertNoImageCopyAttachment(self, volume_name):
        """The copy's attachment is gone: no export and no array host of
        the image-copy connector are left."""
        left = [e.attachment_id for e in exports_of(volume_name)
                if e.attachment_id.startswith('volrep-image-copy.')]
        self.assertEqual([], left)
        hosts = [h.name for h in array_hosts()
                 if any(i.startswith('iqn.2010-10.org.openstack:volrep-image-'
                                     'copy.') for i in h.iqns)]
        self.assertEqual([], hosts)

    def upload(self, driver, volume, disk_format):
        """copy_volume_to_image into a new image; its file."""
        image_id = self.images.add(None, disk_format, copy=False)
        driver.copy_volume_to_image(self.ctxt, volume, self.images,
                                    self.images.show(self.ctxt, image_id))
        self.assertEqual('active', self.images.meta[image_id]['status'])
        return self.images.path(image_id)


class NBDImagesTest(ImagesTest):
    """Backend VOLREP_BACKEND attaches over NBD; Cinder's VolumeManager
    creates volumes from the images and uploads them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = vs.volume_manager()
        cls.plain_type = vs.volume_type_in_db({})

    def create_from_image(self, image_id, size=1):
        self.failure = None
        vol = vs.volume_in_db(self.plain_type, size=size)
        spec = self.objects.RequestSpec(image_id=image_id, volume_id=vol.id)
        # The manager finds the image service by the image; ours, here.
        with mock.patch('cinder.image.glance.get_remote_image_service',
                        return_value=(self.images, image_id)):
            try:
                self.manager.create_volume(self.ctxt, vol, request_spec=spec,
                                           allow_reschedule=False)
            except Exception as err:
                # The manager raises what failed after setting the status.
                self.failure = err
        return self.objects.Volume.get_by_id(self.ctxt, vol.id)

    def test_qcow2_image_sparse(self):
        image_id = self.images.add(self.qcow2, 'qcow2')
        vol = self.create_from_image(image_id)
        self.assertEqual('available', vol.status)
        self.assertTrue(vol.bootable)
        self.assertSame(self.qcow2, 'qcow2', vol.provider_id)
        # --target-is-zero: the 1 GiB image's 1 MiB + 64 KiB of data are
        # all the volume holds; not its gigabyte of zeros.
        used = array_volume(vol.provider_id).used_bytes
        self.assertGreaterEqual(used, MIB + 64 * 1024)
        self.assertLess(used, 4 * MIB,
                        'the import wrote zeros: %d bytes used' % used)
        # The driver API reports the same.
        self.assertEqual(used, vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.used_bytes)
        print('\nqcow2 of 1 GiB with 1 MiB + 64 KiB of data: the volume '
              'holds %d bytes' % used)
        self.assertNoImageCopyAttachment(vol.provider_id)

    def test_raw_image(self):
        image_id = self.images.add(self.raw, 'raw')
        vol = self.create_from_image(image_id)
        self.assertEqual('available', vol.status)
        self.assertSame(self.raw, 'raw', vol.provider_id)
        self.assertNoImageCopyAttachment(vol.provider_id)

    def test_image_larger_than_volume_refused(self):
        image_id = self.images.add(self.big, 'qcow2')
        # Through the manager: Cinder's own flow checks the virtual size of
        # the image it fetched before it calls the driver.
        vol = self.create_from_image(image_id)
        self.assertEqual('error', vol.status)
        self.assertIsInstance(self.failure, self.exception.ImageUnacceptable)
        self.assertIn('2GB', str(self.failure))
        # Called directly, as reimage does, the driver refuses it itself,
        # naming both sizes, before it attaches anything.
        vol = vs.volume_in_db(self.plain_type)
        self.manager.driver.create_volume(vol)
        self.addCleanup(self.manager.driver.delete_volume, vol)
        with self.assertRaises(self.exception.ImageUnacceptable) as c:
            self.manager.driver.copy_image_to_volume(
                self.ctxt, vol, self.images, image_id)
        msg = str(c.exception)
        self.assertIn('virtual size is %d bytes (2.00 GiB)' % (2 * GIB), msg)
        self.assertIn('volume %s of 1 GiB' % vol.id, msg)
        self.assertIn('at least 2 GiB', msg)
        name = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.provider_id
        self.assertEqual(0, array_volume(name).used_bytes)
        self.assertEqual([], exports_of(name))

    def test_failed_copy_revokes_its_attachment(self):
        # qemu-img fails half-way (here: at once, as if the export went
        # away); the attachment made for it is revoked all the same.
        from oslo_concurrency import processutils
        image_id = self.images.add(self.raw, 'raw')
        driver = self.manager.driver
        vol = vs.volume_in_db(self.plain_type)
        driver.create_volume(vol)
        self.addCleanup(driver.delete_volume, vol)
        name = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.provider_id
        attached = []

        def fail(*cmd, **kwargs):
            attached.extend(e.attachment_id for e in exports_of(name))
            raise processutils.ProcessExecutionError(
                exit_code=1, cmd=' '.join(cmd), stderr='qemu-img: failed')
        with mock.patch.object(driver, '_execute', side_effect=fail):
            with self.assertRaises(processutils.ProcessExecutionError):
                driver.copy_image_to_volume(self.ctxt, vol, self.images,
                                            image_id)
        self.assertEqual(['volrep-image-copy.volrep-test'], attached)
        self.assertNoImageCopyAttachment(name)

    def test_claimed_format_must_match(self):
        # A qcow2 that Glance calls raw would be written as its qcow2
        # header; Cinder's format check refuses it.
        image_id = self.images.add(self.qcow2, 'raw')
        vol = vs.volume_in_db(self.plain_type)
        self.manager.driver.create_volume(vol)
        self.addCleanup(self.manager.driver.delete_volume, vol)
        with self.assertRaises(self.exception.ImageUnacceptable):
            self.manager.driver.copy_image_to_volume(
                self.ctxt, vol, self.images, image_id)

    def test_reimage_writes_the_zeros(self):
        """A volume with data (Cinder's reimage sets previous_status) gets
        the image's zeros written; a new one would not need them, which
        the sparse path relies on: on a volume with data it leaves the old
        bytes where the image has none."""
        image_id = self.images.add(self.qcow2, 'qcow2')
        driver = self.manager.driver
        vol = vs.volume_in_db(self.plain_type)
        driver.create_volume(vol)
        self.addCleanup(driver.delete_volume, vol)
        name = vs.raw('GetVolume', pb.GetVolumeRequest(
            backend=vs.BACKEND, volume_id=vol.id)).volume.provider_id
        for off in range(0, 8 * MIB, MIB):
            write_array(name, off, b'\xff' * MIB)
        vol.previous_status = 'available'
        driver.copy_image_to_volume(self.ctxt, vol, self.images, image_id)
        self.assertSame(self.qcow2, 'qcow2', name)

        for off in range(0, 8 * MIB, MIB):
            write_array(name, off, b'\xff' * MIB)
        vol.previous_status = None
        driver.copy_image_to_volume(self.ctxt, vol, self.images, image_id)
        self.assertDiffers(self.qcow2, 'qcow2', name)

    def test_copy_volume_to_image_qcow2_and_raw(self):
        image_id = self.images.add(self.qcow2, 'qcow2')
        vol = self.create_from_image(image_id)
        self.assertEqual('available', vol.status)

        # Through the manager, as `openstack image create --volume` casts.
        up = self.images.add(None, 'qcow2', copy=False)
        vol.status = 'uploading'
        vol.save()
        with mock.patch('cinder.image.glance.get_remote_image_service',
                        return_value=(self.images, up)):
            self.manager.copy_volume_to_image(
                self.ctxt, vol.id, self.images.show(self.ctxt, up))
        vol = self.objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('available', vol.status)
        path = self.images.path(up)
        info = qemu_img_info(path)
        self.assertEqual('qcow2', info['format'])
        self.assertEqual(GIB, info['virtual-size'])
        # The volume's unwritten gigabyte is not in the file.
        self.assertLess(os.path.getsize(path), 4 * MIB)
        self.assertSame(path, 'qcow2', vol.provider_id)

        path = self.upload(self.manager.driver, vol, 'raw')
        self.assertEqual(GIB, os.path.getsize(path))
        self.assertSame(path, 'raw', vol.provider_id)
        self.assertNoImageCopyAttachment(vol.provider_id)


class ISCSIImagesTest(ImagesTest):
    """Backend VOLREP_ISCSI_BACKEND attaches over iSCSI with CHAP; the
    driver, set up as cinder-volume sets it up, writes and reads the
    volumes with qemu's iSCSI driver (libiscsi, no kernel initiator)."""

    @classmethod
    def setUpClass(cls):
        if not ISCSI_BACKEND:
            vs.skip('no iSCSI backend: set VOLREP_ISCSI_BACKEND '
                    '(e2e/cinder_driver_test.go does)')
        if not os.path.exists('/usr/lib/x86_64-linux-gnu/qemu/'
                              'block-iscsi.so'):
            vs.skip('qemu\'s iSCSI driver is missing; `make deps` installs '
                    'qemu-block-extra')
        super().setUpClass()
        from cinder import context
        cls.driver = vs.make_driver(ISCSI_BACKEND)
        cls.driver.do_setup(context.get_admin_context())
        cls.driver.check_for_setup_error()

    def create(self):
        vol = self.objects.Volume(self.ctxt, id=vs.new_id(), _name_id=None,
                                  size=1, metadata={}, volume_type_id=None,
                                  volume_type=None)
        update = self.driver.create_volume(vol)
        self.addCleanup(self.driver.delete_volume, vol)
        vol.provider_id = update['provider_id']
        return vol

    def test_stats_say_iscsi(self):
        self.assertEqual('iSCSI', self.driver.get_volume_stats(
            refresh=True)['storage_protocol'])

    def test_qcow2_image_and_back(self):
        vol = self.create()
        image_id = self.images.add(self.qcow2, 'qcow2')
        seen = []
        real = self.driver.initialize_connection

        def record(*args, **kwargs):
            seen.append(real(*args, **kwargs))
            return seen[-1]
        with mock.patch.object(self.driver, 'initialize_connection',
                               side_effect=record):
            self.driver.copy_image_to_volume(self.ctxt, vol, self.images,
                                             image_id)
        # qemu logged in with the host's CHAP credentials.
        self.assertEqual(['iscsi'], [c['driver_volume_type'] for c in seen])
        self.assertEqual('CHAP', seen[0]['data']['auth_method'])
        self.assertSame(self.qcow2, 'qcow2', vol.provider_id)
        used = array_volume(vol.provider_id).used_bytes
        self.assertLess(used, 4 * MIB,
                        'the import wrote zeros: %d bytes used' % used)
        self.assertNoImageCopyAttachment(vol.provider_id)

        path = self.upload(self.driver, vol, 'qcow2')
        self.assertEqual('qcow2', qemu_img_info(path)['format'])
        self.assertSame(path, 'qcow2', vol.provider_id)
        path = self.upload(self.driver, vol, 'raw')
        self.assertSame(path, 'raw', vol.provider_id)
        self.assertNoImageCopyAttachment(vol.provider_id)

    def test_raw_image(self):
        vol = self.create()
        image_id = self.images.add(self.raw, 'raw')
        self.driver.copy_image_to_volume(self.ctxt, vol, self.images,
                                         image_id)
        self.assertSame(self.raw, 'raw', vol.provider_id)


# Not a test case of its own: the base class only shares helpers.
del ImagesTest

if __name__ == '__main__':
    unittest.main()
