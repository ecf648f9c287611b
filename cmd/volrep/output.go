package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// outputFormat is the value of -o/--output. As a pflag.Value it rejects
// unknown formats while the flags are parsed, which makes them usage errors.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }

func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(strings.ToLower(s)); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return fmt.Errorf("want table or json")
}

var jsonOptions = protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false, UseProtoNames: true}

// render prints a response: as protojson with -o json, otherwise through
// table, which writes tab-separated lines that are aligned here.
func (a *app) render(msg proto.Message, table func(w io.Writer)) error {
	if a.output == outputJSON {
		b, err := jsonOptions.Marshal(msg)
		if err != nil {
			return &cliError{What: "encode the response as JSON", Err: err}
		}
		b = append(b, '\n')
		if _, err := a.stdout.Write(b); err != nil {
			return &cliError{What: "write output", Err: err}
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	if err := tw.Flush(); err != nil {
		return &cliError{What: "write output", Err: err}
	}
	return nil
}

// row writes one table line of tab-separated cells.
func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// dash shows an empty cell as "-" so that columns stay readable.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func formatInt(i int64) string { return strconv.FormatInt(i, 10) }

// listOrDash joins a list with commas, or shows "-" for an empty one.
func listOrDash(items []string) string { return dash(strings.Join(items, ",")) }

// humanBytes prints a byte count in binary units: 1536 → "1.5 KiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return formatInt(n) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// replicationStatuses are Cinder's fields.ReplicationStatus spellings.
var replicationStatuses = map[driverv1.ReplicationStatus]string{
	driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED:       "disabled",
	driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED:        "enabled",
	driverv1.ReplicationStatus_REPLICATION_STATUS_ERROR:          "error",
	driverv1.ReplicationStatus_REPLICATION_STATUS_FAILING_OVER:   "failing-over",
	driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER:    "failed-over",
	driverv1.ReplicationStatus_REPLICATION_STATUS_NOT_CAPABLE:    "not-capable",
	driverv1.ReplicationStatus_REPLICATION_STATUS_FAILOVER_ERROR: "failover-error",
	driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLING:       "enabling",
	driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLING:      "disabling",
	driverv1.ReplicationStatus_REPLICATION_STATUS_UNSPECIFIED:    "-",
}

// replicationStatus prints a ReplicationStatus the way Cinder does.
func replicationStatus(s driverv1.ReplicationStatus) string {
	if name, ok := replicationStatuses[s]; ok {
		return name
	}
	return fmt.Sprintf("unknown(%d)", int32(s))
}

// modelUpdateTable shows the result of a create: the object's ID, its
// backend, and what the driver told the volume manager to store.
func modelUpdateTable(w io.Writer, id, backend string, mu *driverv1.ModelUpdate) {
	row(w, "id", id)
	row(w, "backend", backend)
	row(w, "provider_id", dash(mu.GetProviderId()))
	row(w, "replication_status", replicationStatus(mu.GetReplicationStatus()))
	if s := mu.GetStatus(); s != "" {
		row(w, "status", s)
	}
	keys := make([]string, 0, len(mu.GetMetadata()))
	for k := range mu.GetMetadata() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		row(w, "metadata."+k, mu.GetMetadata()[k])
	}
}
