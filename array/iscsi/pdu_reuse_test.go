package iscsi

import (
	"bufio"
	"bytes"
	"testing"
)

// TestReadDataKeepsCallerBuffer: a Data-Out segment read into a task's
// buffer must not become the reader's scratch buffer, or the next PDU's
// data segment (another command's immediate data) lands in that task's
// buffer while it is being written — qemu-img convert -W over iSCSI
// corrupted 64 KiB per command that way.
func TestReadDataKeepsCallerBuffer(t *testing.T) {
	var dataOut, cmd [bhsLen]byte
	dataOut[0] = opDataOut
	cmd[0] = opSCSICmd
	first := bytes.Repeat([]byte{0xaa}, 4096)
	second := bytes.Repeat([]byte{0xbb}, 4096)
	stream := appendPDU(appendPDU(nil, &dataOut, first, false, false), &cmd, second, false, false)
	pr := pduReader{r: bufio.NewReader(bytes.NewReader(stream)), maxData: maxDataSegment}
	var p pdu
	if err := pr.readHeader(&p); err != nil {
		t.Fatal(err)
	}
	task := make([]byte, 4096)
	if err := pr.readData(&p, task); err != nil {
		t.Fatal(err)
	}
	if err := pr.read(&p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(task, first) {
		t.Fatal("the next PDU's data segment overwrote the task's buffer")
	}
	if !bytes.Equal(p.data, second) {
		t.Fatal("the second PDU's data segment was not read")
	}
}
