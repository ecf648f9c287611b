// Package transfer ships snapshots between arrays: the sender streams the
// blocks that differ from a base snapshot both sides hold, each 4 KiB block
// with its CRC-32C; the receiver verifies every block, stages the data,
// checkpoints so an interrupted transfer resumes where it stopped, and
// commits the snapshot only when the trailer's count and digest match.
package transfer

import (
	"hash/crc32"

	"github.com/volrep/volrep/errdefs"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const blockSize = 4096

// digest summarises a stream as an order-independent sum of mixed
// (position, checksum) pairs, so sender and receiver agree however the
// messages were split.
type digest struct {
	sum    uint64
	blocks int64
}

func mix(a, b uint64) uint64 {
	x := a*0x9e3779b97f4a7c15 ^ (b + 0x632be59bd9b4e019)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (d *digest) data(off int64, crcs []uint32) {
	for i, c := range crcs {
		d.sum += mix(uint64(off)/blockSize+uint64(i), uint64(c))
	}
	d.blocks += int64(len(crcs))
}

func (d *digest) zero(off, length int64) {
	d.sum += mix(uint64(off), uint64(length)|1<<63)
	d.blocks += length / blockSize
}

// blockCRCs returns the CRC-32C of each 4 KiB block of p.
func blockCRCs(p []byte, out []uint32) []uint32 {
	out = out[:0]
	for len(p) > 0 {
		n := min(len(p), blockSize)
		out = append(out, crc32.Checksum(p[:n], castagnoli))
		p = p[n:]
	}
	return out
}

// checkCRCs checks data, read at off, against the CRC-32C of each of its
// blocks; it returns the CRCs computed (into out).
func checkCRCs(off int64, data []byte, want, out []uint32) ([]uint32, error) {
	out = blockCRCs(data, out)
	if len(out) != len(want) {
		return out, errdefs.InvalidArgument("crc32c", "%d checksums for %d blocks at %d", len(want), len(out), off)
	}
	for i, w := range want {
		if out[i] != w {
			return out, errdefs.Aborted("block at %d failed its CRC-32C check (got %08x, want %08x); resend", off+int64(i)*blockSize, out[i], w)
		}
	}
	return out, nil
}
