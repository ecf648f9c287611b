package store

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

var bucketGroups = []byte("groups")

type groupRec struct {
	Name    string            `json:"name"`
	Pool    string            `json:"pool"`
	Members []string          `json:"members"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
}

func (s *Store) loadGroups(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketGroups)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		var g groupRec
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		s.groups[g.Name] = &g
		return nil
	})
}

func groupOf(g *groupRec) array.Group {
	return array.Group{Name: g.Name, Pool: g.Pool, Members: slices.Clone(g.Members), Created: g.Created, Labels: maps.Clone(g.Labels)}
}

func (s *Store) groupLocked(name string) (*groupRec, error) {
	g, ok := s.groups[name]
	if !ok {
		return nil, errdefs.NotFound("consistency group %q not found on array %s", name, s.opts.Name)
	}
	return g, nil
}

// groupOfVolume returns the group a volume belongs to, or nil.
func (s *Store) groupOfVolume(vol string) *groupRec {
	for _, g := range s.groups {
		if slices.Contains(g.Members, vol) {
			return g
		}
	}
	return nil
}

// groupNameOf is the name of vol's group, "" if it has none.
func (s *Store) groupNameOf(vol string) string {
	if g := s.groupOfVolume(vol); g != nil {
		return g.Name
	}
	return ""
}

func (s *Store) putGroup(g *groupRec) error {
	return s.update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketGroups), []byte(g.Name), g) })
}

// CreateGroup creates an empty consistency group; again is a no-op.
func (s *Store) CreateGroup(ctx context.Context, name, pool string, labels map[string]string) (array.Group, error) {
	if err := array.CheckName("name", name); err != nil {
		return array.Group{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Group{}, err
	}
	if g, ok := s.groups[name]; ok {
		if g.Pool != pool {
			return array.Group{}, errdefs.AlreadyExists("consistency group %q already exists in pool %q", name, g.Pool)
		}
		return groupOf(g), nil
	}
	if _, ok := s.pools[pool]; !ok {
		return array.Group{}, s.noPool(pool)
	}
	g := &groupRec{Name: name, Pool: pool, Members: []string{}, Created: s.opts.Now().UTC(), Labels: labels}
	if err := s.putGroup(g); err != nil {
		return array.Group{}, err
	}
	s.groups[name] = g
	return groupOf(g), nil
}

// GetGroup returns a consistency group.
func (s *Store) GetGroup(ctx context.Context, name string) (array.Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.Group{}, err
	}
	g, err := s.groupLocked(name)
	if err != nil {
		return array.Group{}, err
	}
	return groupOf(g), nil
}

// ListGroups lists consistency groups by name.
func (s *Store) ListGroups(ctx context.Context) ([]array.Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := []array.Group{}
	for _, g := range s.groups {
		out = append(out, groupOf(g))
	}
	slices.SortFunc(out, func(a, b array.Group) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteGroup deletes an empty consistency group.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	g, err := s.groupLocked(name)
	if err != nil {
		return err
	}
	if len(g.Members) > 0 {
		return errdefs.FailedPrecondition("consistency group %q has %d members; remove them first", name, len(g.Members))
	}
	if err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketGroups).Delete([]byte(name)) }); err != nil {
		return err
	}
	delete(s.groups, name)
	return nil
}

// AddMembers adds volumes to a group. A volume already in it is skipped; a
// volume in another group is refused.
func (s *Store) AddMembers(ctx context.Context, name string, volumes []string) (array.Group, error) {
	defer s.groupChanged(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Group{}, err
	}
	g, err := s.groupLocked(name)
	if err != nil {
		return array.Group{}, err
	}
	next := *g
	next.Members = slices.Clone(g.Members)
	for _, v := range volumes {
		if _, err := s.volumeLocked(v); err != nil {
			return array.Group{}, err
		}
		if other := s.groupOfVolume(v); other != nil && other != g {
			return array.Group{}, errdefs.FailedPrecondition("volume %q is already in consistency group %q; remove it there first", v, other.Name)
		}
		if !slices.Contains(next.Members, v) {
			next.Members = append(next.Members, v)
		}
	}
	slices.Sort(next.Members)
	if err := s.putGroup(&next); err != nil {
		return array.Group{}, err
	}
	*g = next
	return groupOf(g), nil
}

// RemoveMembers removes volumes from a group; absent ones are skipped.
func (s *Store) RemoveMembers(ctx context.Context, name string, volumes []string) (array.Group, error) {
	defer s.groupChanged(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Group{}, err
	}
	g, err := s.groupLocked(name)
	if err != nil {
		return array.Group{}, err
	}
	if err := s.removeMembersLocked(g, volumes); err != nil {
		return array.Group{}, err
	}
	return groupOf(g), nil
}

func (s *Store) removeMembersLocked(g *groupRec, volumes []string) error {
	next := *g
	next.Members = slices.DeleteFunc(slices.Clone(g.Members), func(m string) bool { return slices.Contains(volumes, m) })
	if len(next.Members) == len(g.Members) {
		return nil
	}
	if err := s.putGroup(&next); err != nil {
		return err
	}
	*g = next
	return nil
}

// CreateGroupSnapshot snapshots every member at one write barrier.
func (s *Store) CreateGroupSnapshot(ctx context.Context, name, snapshot string, labels map[string]string) ([]array.Snapshot, error) {
	s.mu.RLock()
	g, err := s.groupLocked(name)
	var members []string
	if err == nil {
		members = slices.Clone(g.Members)
	}
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, errdefs.FailedPrecondition("consistency group %q has no members to snapshot", name)
	}
	reqs := make([]SnapshotRequest, len(members))
	for i, m := range members {
		reqs[i] = SnapshotRequest{Volume: m, Name: snapshot, Labels: labels}
	}
	return s.CreateSnapshots(ctx, reqs)
}
