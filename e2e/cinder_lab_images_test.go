package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
)

// labImages is the lab's step "a volume from a Glance image" (issue 15):
// a qcow2 of 1 GiB with 1 MiB + 64 KiB of data, uploaded to the lab's
// glance-api over its v2 API, becomes a volume through cinder-api,
// -scheduler and -volume, whose driver writes it with qemu-img over the
// volume's NBD export. The volume then holds the image, and only its data;
// uploaded back to Glance as qcow2 it is the same image again.
func labImages(t *testing.T, l *cinderLab, pure1 array.Array) {
	qemuImg, qemuIO := tool(t, "qemu-img"), tool(t, "qemu-io")
	img := filepath.Join(t.TempDir(), "lab.qcow2")
	run(t, false, qemuImg, "create", "-f", "qcow2", img, "1G")
	run(t, false, qemuIO, "-f", "qcow2", img, "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 5M 64k")

	g := glanceAPI{base: l.vars["OS_IMAGE_URL"], project: l.vars["OS_PROJECT_ID"]}
	began := time.Now()
	id := g.upload(t, img, "qcow2")
	l.waitFor("image "+id+" active in Glance", time.Minute, func() (bool, string) {
		s := g.status(t, id)
		return s == "active", s
	})
	v := l.create("--image", id, "--volume-type", "pure-async", "--name", "from-image", "1")
	l.waitVolume(v, "available")
	t.Logf("Glance upload to an available volume from the image: %s", time.Since(began).Round(100*time.Millisecond))

	name := providerName(v)
	uri := nbdExport(t, pure1, name)
	defer func() {
		if _, err := pure1.DeleteExport(context.Background(), "", name, "e2e-"+name); err != nil {
			t.Errorf("DeleteExport %s: %v", name, err)
		}
	}()
	out, _ := run(t, false, qemuImg, "compare", "-f", "qcow2", "-F", "raw", img, uri)
	if !strings.Contains(out, "Images are identical") {
		t.Fatalf("qemu-img compare of the image and volume %s: %s", v, out)
	}
	av, err := pure1.GetVolume(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	// The image's 1 GiB of zeros were not written (--target-is-zero).
	if av.UsedBytes < 1<<20 || av.UsedBytes > 4<<20 {
		t.Fatalf("pure1's %s holds %d bytes after the import of 1 MiB + 64 KiB of data", name, av.UsedBytes)
	}
	t.Logf("volume %s from the image holds %d bytes on pure1", v, av.UsedBytes)
	// The image copy's own attachment is revoked.
	exports, err := pure1.ListExports(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exports {
		if strings.HasPrefix(e.AttachmentID, "volrep-image-copy.") {
			t.Errorf("the image copy's export of %s is still there: %+v", name, e)
		}
	}

	// And back: upload-to-image as qcow2, read from Glance, the same image.
	began = time.Now()
	up := kvTable(l.must("cinder", "upload-to-image", "--disk-format", "qcow2", v, "from-volume"))["image_id"]
	if up == "" {
		t.Fatal("cinder upload-to-image printed no image_id")
	}
	l.waitFor("image "+up+" active in Glance", 2*time.Minute, func() (bool, string) {
		s := g.status(t, up)
		return s == "active", s
	})
	l.waitVolume(v, "available")
	t.Logf("upload-to-image of the volume as qcow2 to an active image: %s", time.Since(began).Round(100*time.Millisecond))
	back := filepath.Join(t.TempDir(), "back.qcow2")
	if err := os.WriteFile(back, g.do(t, http.MethodGet, "/v2/images/"+up+"/file", "", nil, http.StatusOK), 0o600); err != nil {
		t.Fatal(err)
	}
	info, _ := run(t, false, qemuImg, "info", "--output=json", back)
	var meta struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(info), &meta); err != nil || meta.Format != "qcow2" || meta.VirtualSize != 1<<30 {
		t.Fatalf("the uploaded image is %+v (%v), want a qcow2 of 1 GiB:\n%s", meta, err, info)
	}
	out, _ = run(t, false, qemuImg, "compare", "-f", "qcow2", "-F", "qcow2", img, back)
	if !strings.Contains(out, "Images are identical") {
		t.Fatalf("qemu-img compare of the image and the volume's upload: %s", out)
	}
}

// glanceAPI is the lab's glance-api (noauth: it makes an admin context of
// every request; the headers say who asks, as a proxy in front of it would).
type glanceAPI struct{ base, project string }

func (g glanceAPI) do(t *testing.T, method, path, ctype string, body io.Reader, want int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Roles", "admin,member,reader")
	req.Header.Set("X-Tenant-Id", g.project)
	req.Header.Set("X-Project-Id", g.project)
	req.Header.Set("X-User-Id", "admin")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("glance %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("glance %s %s: %v", method, path, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("glance %s %s: %s, want %d: %s", method, path, resp.Status, want, data)
	}
	return data
}

// upload creates an image (POST /v2/images) and sends its data (PUT
// /v2/images/ID/file); it returns the image's id.
func (g glanceAPI) upload(t *testing.T, path, diskFormat string) string {
	t.Helper()
	// Glance's default visibility (shared): publicizing is for the admin
	// role, which noauth's context lacks; Cinder's noauth context is an
	// admin's, which sees every image.
	meta, err := json.Marshal(map[string]string{
		"name": "volrep-lab-" + filepath.Base(path), "disk_format": diskFormat,
		"container_format": "bare",
	})
	if err != nil {
		t.Fatal(err)
	}
	var image struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(g.do(t, http.MethodPost, "/v2/images", "application/json", bytes.NewReader(meta), http.StatusCreated), &image); err != nil || image.ID == "" {
		t.Fatalf("glance POST /v2/images: no image id (%v)", err)
	}
	// In memory (a small image), so that the request has a Content-Length.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g.do(t, http.MethodPut, fmt.Sprintf("/v2/images/%s/file", image.ID), "application/octet-stream", bytes.NewReader(data), http.StatusNoContent)
	return image.ID
}

func (g glanceAPI) status(t *testing.T, id string) string {
	t.Helper()
	var image struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(g.do(t, http.MethodGet, "/v2/images/"+id, "", nil, http.StatusOK), &image); err != nil {
		t.Fatal(err)
	}
	return image.Status
}
