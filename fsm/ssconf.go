package fsm

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"ganeti-node/atomicfile"
)

// SsconfPrefix starts the name of every ssconf file.
const SsconfPrefix = "ssconf_"

// Ssconf derives the ssconf key/value pairs from s. Keys are the file
// names without the ssconf_ prefix; values end in a newline when not
// empty. Lists are sorted by node name so that every node writes the
// same bytes for the same state.
func Ssconf(s *State) map[string]string {
	m := map[string]string{}
	if !s.Initialised() {
		return m
	}
	var all, ips, mcs, mcIPs, certs, online, offline []string
	for _, n := range s.SortedNodes() {
		all = append(all, n.Name)
		ips = append(ips, n.Name+" "+n.PrimaryIP)
		if n.Offline {
			offline = append(offline, n.Name)
		} else {
			online = append(online, n.Name)
		}
		if n.MasterCandidate {
			mcs = append(mcs, n.Name)
			mcIPs = append(mcIPs, n.PrimaryIP)
		}
		if d, ok := s.CandidateMap[n.UUID]; ok {
			certs = append(certs, n.UUID+"="+d)
		}
	}
	m["cluster_name"] = line(s.Cluster.Name)
	if master := s.Nodes[s.Cluster.MasterNode]; master != nil {
		m["master_node"] = line(master.Name)
		m["master_ip"] = line(master.PrimaryIP)
	}
	m["node_list"] = lines(all)
	m["node_primary_ips"] = lines(ips)
	m["master_candidates"] = lines(mcs)
	m["master_candidates_ips"] = lines(mcIPs)
	m["master_candidates_certs"] = lines(certs)
	m["online_nodes"] = lines(online)
	m["offline_nodes"] = lines(offline)
	m["candidate_pool_size"] = line(strconv.Itoa(s.Cluster.CandidatePoolSize))
	m["config_index"] = line(strconv.FormatUint(s.Index, 10))
	return m
}

func line(v string) string { return v + "\n" }

func lines(v []string) string {
	if len(v) == 0 {
		return ""
	}
	sort.Strings(v)
	return strings.Join(v, "\n") + "\n"
}

// WriteSsconf makes dir hold exactly the ssconf files of m: changed
// files are replaced atomically, unchanged ones are left alone and
// ssconf files for keys no longer in m are removed.
func WriteSsconf(dir string, m map[string]string) error {
	for k, v := range m {
		p := filepath.Join(dir, SsconfPrefix+k)
		if old, err := os.ReadFile(p); err == nil && string(old) == v {
			continue
		}
		if err := atomicfile.Write(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("writing ssconf: %w", err)
		}
	}
	old, err := filepath.Glob(filepath.Join(dir, SsconfPrefix+"*"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, ok := m[strings.TrimPrefix(filepath.Base(p), SsconfPrefix)]; !ok {
			if err := atomicfile.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseCandidateCerts parses ssconf_master_candidates_certs content
// (UUID=DIGEST lines) into a map. Malformed lines are an error.
func ParseCandidateCerts(data string) (map[string]string, error) {
	m := map[string]string{}
	for i, l := range strings.Split(strings.TrimRight(data, "\n"), "\n") {
		if l == "" {
			continue
		}
		id, d, ok := strings.Cut(l, "=")
		if !ok || !ValidUUID(id) || !ValidDigest(d) {
			return nil, fmt.Errorf("ssconf master_candidates_certs line %d: "+
				"want UUID=sha256:HEX", i+1)
		}
		m[id] = d
	}
	return m, nil
}
