// Package demo embeds the default configuration that volrepd runs when it
// is started without --config.
package demo

import _ "embed"

// Config is volrep.conf from this directory.
//
//go:embed volrep.conf
var Config []byte

// Name is how problems in the embedded file are reported.
const Name = "<embedded demo>/volrep.conf"
