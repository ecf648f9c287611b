package iscsi

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestActivityDrainWaitsForEarlierCommandsOnly: a reset waits for the
// commands that began before it, not for those that began since, so a
// unit under steady load still gets its reset answered; and it gives up
// when its connection ends.
func TestActivityDrainWaitsForEarlierCommandsOnly(t *testing.T) {
	var a activity
	endEarlier := a.begin(nexus{initiator: "a"})
	drained := make(chan error, 1)
	go func() { drained <- a.drain(t.Context(), nil) }()
	// A command that begins while the drain waits is not waited for.
	time.Sleep(20 * time.Millisecond)
	endLater := a.begin(nexus{initiator: "a"})
	defer endLater()
	select {
	case err := <-drained:
		t.Fatalf("the drain returned (%v) while a command begun before it still ran", err)
	case <-time.After(100 * time.Millisecond):
	}
	endEarlier()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain still waits once the commands begun before it ended, with a later one running")
	}

	ctx, cancel := context.WithCancel(t.Context())
	go func() { drained <- a.drain(ctx, nil) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-drained:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a drain whose context ended: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a drain whose context ended still waits")
	}
}

// TestActivityDrainOfSomeNexuses: a drain for some nexuses (a PREEMPT
// AND ABORT's preempted ones) waits for their commands only.
func TestActivityDrainOfSomeNexuses(t *testing.T) {
	var a activity
	fenced, other := nexus{initiator: "fenced"}, nexus{initiator: "other"}
	endOther := a.begin(other)
	defer endOther()
	endFenced := a.begin(fenced)
	drained := make(chan error, 1)
	go func() { drained <- a.drain(t.Context(), func(n nexus) bool { return n == fenced }) }()
	select {
	case err := <-drained:
		t.Fatalf("the drain returned (%v) while the fenced nexus's command still ran", err)
	case <-time.After(100 * time.Millisecond):
	}
	endFenced()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain still waits for another nexus's command")
	}
}
