package iscsi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcodes (RFC 7143 section 11.2.1.2).
const (
	opNOPOut       = 0x00
	opSCSICmd      = 0x01
	opTMFReq       = 0x02
	opLoginReq     = 0x03
	opTextReq      = 0x04
	opDataOut      = 0x05
	opLogoutReq    = 0x06
	opSNACKReq     = 0x10
	opNOPIn        = 0x20
	opSCSIResp     = 0x21
	opTMFResp      = 0x22
	opLoginResp    = 0x23
	opTextResp     = 0x24
	opDataIn       = 0x25
	opLogoutResp   = 0x26
	opR2T          = 0x31
	opAsyncMsg     = 0x32
	opReject       = 0x3f
	bhsLen         = 48
	flagFinal      = 0x80
	immediateBit   = 0x40
	reservedTag    = 0xffffffff
	maxAHSLen      = 255 * 4
	minDataSegment = 512
	maxDataSegment = 1<<24 - 1
)

// Reject reasons (11.17.1).
const (
	rejectDataDigest   = 0x02
	rejectProtocol     = 0x04
	rejectNotSupported = 0x05
	rejectInvalidField = 0x09
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// errDigest is a header or data digest mismatch.
var errDigest = errors.New("iscsi: digest mismatch")

// errTooLong is a data segment over the negotiated limit.
var errTooLong = errors.New("iscsi: data segment longer than MaxRecvDataSegmentLength")

// pdu is one PDU: the BHS, its additional header segments and its data
// segment (without padding).
type pdu struct {
	bhs  [bhsLen]byte
	ahs  []byte
	data []byte
}

func (p *pdu) opcode() byte       { return p.bhs[0] & 0x3f }
func (p *pdu) immediate() bool    { return p.bhs[0]&immediateBit != 0 }
func (p *pdu) flags() byte        { return p.bhs[1] }
func (p *pdu) final() bool        { return p.bhs[1]&flagFinal != 0 }
func (p *pdu) itt() uint32        { return binary.BigEndian.Uint32(p.bhs[16:]) }
func (p *pdu) u32(off int) uint32 { return binary.BigEndian.Uint32(p.bhs[off:]) }
func (p *pdu) lun() uint64        { return binary.BigEndian.Uint64(p.bhs[8:]) }

func (p *pdu) setU32(off int, v uint32) { binary.BigEndian.PutUint32(p.bhs[off:], v) }

// ahsLength returns TotalAHSLength in bytes.
func ahsLength(bhs *[bhsLen]byte) int { return int(bhs[4]) * 4 }

// dataLength returns DataSegmentLength.
func dataLength(bhs *[bhsLen]byte) int {
	return int(bhs[5])<<16 | int(bhs[6])<<8 | int(bhs[7])
}

func setDataLength(bhs *[bhsLen]byte, n int) {
	bhs[5], bhs[6], bhs[7] = byte(n>>16), byte(n>>8), byte(n)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// pduReader reads PDUs from a connection. Digests apply once negotiated;
// maxData bounds the data segment it accepts.
type pduReader struct {
	r            *bufio.Reader
	headerDigest bool
	dataDigest   bool
	maxData      int
}

// read reads one whole PDU.
func (pr *pduReader) read(p *pdu) error {
	if err := pr.readHeader(p); err != nil {
		return err
	}
	return pr.readData(p, nil)
}

// readHeader reads the BHS, the AHS and the header digest, and checks the
// data segment length. It never panics: lengths are checked before use.
func (pr *pduReader) readHeader(p *pdu) error {
	if _, err := io.ReadFull(pr.r, p.bhs[:]); err != nil {
		return err
	}
	ahsN := ahsLength(&p.bhs)
	if dataN := dataLength(&p.bhs); dataN > pr.maxData {
		return fmt.Errorf("%w: %d bytes, limit %d", errTooLong, dataN, pr.maxData)
	}
	p.ahs = p.ahs[:0]
	if ahsN > 0 {
		if cap(p.ahs) < ahsN {
			p.ahs = make([]byte, ahsN)
		}
		p.ahs = p.ahs[:ahsN]
		if _, err := io.ReadFull(pr.r, p.ahs); err != nil {
			return err
		}
	}
	if pr.headerDigest {
		var sum [4]byte
		if _, err := io.ReadFull(pr.r, sum[:]); err != nil {
			return err
		}
		c := crc32.Update(crc32.Checksum(p.bhs[:], crc32c), crc32c, p.ahs)
		if binary.LittleEndian.Uint32(sum[:]) != c {
			return fmt.Errorf("%w: header", errDigest)
		}
	}
	return nil
}

// readData reads the data segment (with padding and digest) into dst,
// which must be DataSegmentLength long, or, with dst nil, into p.data.
func (pr *pduReader) readData(p *pdu, dst []byte) error {
	dataN := dataLength(&p.bhs)
	if dst == nil {
		if cap(p.data) >= dataN {
			dst = p.data[:dataN]
		} else {
			dst = make([]byte, dataN)
		}
		p.data = dst
	} else {
		// dst is the caller's (a task's write buffer): it must not become
		// p.data, which the next PDU's segment is read into while the task
		// may be writing that buffer to the device.
		p.data = p.data[:0]
	}
	if len(dst) != dataN {
		return fmt.Errorf("iscsi: internal error: data buffer of %d bytes for a %d-byte segment", len(dst), dataN)
	}
	if dataN == 0 {
		return nil
	}
	if _, err := io.ReadFull(pr.r, dst); err != nil {
		return err
	}
	var padding [3]byte
	n := pad4(dataN)
	if n > 0 {
		if _, err := io.ReadFull(pr.r, padding[:n]); err != nil {
			return err
		}
	}
	if pr.dataDigest {
		var sum [4]byte
		if _, err := io.ReadFull(pr.r, sum[:]); err != nil {
			return err
		}
		if binary.LittleEndian.Uint32(sum[:]) != dataDigest(dst, n) {
			return fmt.Errorf("%w: data", errDigest)
		}
	}
	return nil
}

// dataDigest is the CRC32C of data and its n padding bytes (zeros).
func dataDigest(data []byte, n int) uint32 {
	var zero [3]byte
	return crc32.Update(crc32.Checksum(data, crc32c), crc32c, zero[:n])
}

// appendHeader appends a BHS (no AHS) with its DataSegmentLength set to
// dataN, and its digest.
func appendHeader(b []byte, bhs *[bhsLen]byte, dataN int, headerDigest bool) []byte {
	setDataLength(bhs, dataN)
	bhs[4] = 0
	b = append(b, bhs[:]...)
	if headerDigest {
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(bhs[:], crc32c))
	}
	return b
}

// appendPDU appends the wire form of a PDU (BHS, no AHS, data with
// padding and digests) to b. The BHS's DataSegmentLength is set here.
func appendPDU(b []byte, bhs *[bhsLen]byte, data []byte, headerDigest, withDataDigest bool) []byte {
	b = appendHeader(b, bhs, len(data), headerDigest)
	if len(data) == 0 {
		return b
	}
	b = append(b, data...)
	var zero [3]byte
	n := pad4(len(data))
	b = append(b, zero[:n]...)
	if withDataDigest {
		b = binary.LittleEndian.AppendUint32(b, dataDigest(data, n))
	}
	return b
}

// parseText splits a text data segment into key=value pairs, in order.
// Pairs are NUL-terminated (the last NUL may be missing). A pair without
// '=' or with an empty or over-long key is an error.
func parseText(data []byte) ([][2]string, error) {
	var kv [][2]string
	for len(data) > 0 {
		end := len(data)
		for i, c := range data {
			if c == 0 {
				end = i
				break
			}
		}
		item := data[:end]
		if end < len(data) {
			data = data[end+1:]
		} else {
			data = nil
		}
		if len(item) == 0 {
			continue // padding NULs
		}
		eq := -1
		for i, c := range item {
			if c == '=' {
				eq = i
				break
			}
		}
		if eq <= 0 || eq > 63 {
			return nil, fmt.Errorf("iscsi: malformed text key %q", truncateKey(item))
		}
		if len(item)-eq-1 > 8192 {
			return nil, fmt.Errorf("iscsi: value of %q is too long", item[:eq])
		}
		kv = append(kv, [2]string{string(item[:eq]), string(item[eq+1:])})
	}
	return kv, nil
}

func truncateKey(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return string(b)
}

// appendText appends key=value\0.
func appendText(b []byte, key, value string) []byte {
	b = append(b, key...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, 0)
}
