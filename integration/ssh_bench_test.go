package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkSSH_PromoteDemote times `promote` and `demote` of one
// regular node on a cluster of N simulated hosts, and in the same run
// the baseline an admin would script: the same authorized_keys edit
// (add a key line, then remove it) on every host, one `ssh` after the
// other. Custom metrics, per iteration: promote-s, demote-s, openssh-s
// (the baseline), fanout-s (the master's logged SSH fan-out time
// within promote+demote) and speedup (openssh-s over promote-s plus
// demote-s). scripts/bench-ssh.sh prints them as a table.
func BenchmarkSSH_PromoteDemote(b *testing.B) {
	for _, n := range []int{5, 20} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			benchPromoteDemote(b, n)
		})
	}
}

func benchPromoteDemote(b *testing.B, n int) {
	c := NewCluster(b, n)
	master, target := c.Hosts[0], c.Hosts[n-1]
	c.Init(master)
	for _, h := range c.Hosts[1:] {
		c.Join(master, h)
	}
	c.waitConverged(c.Hosts...)
	baseline := newOpenSSHLoop(b, master, c.Hosts)
	logFrom := fileSize(b, master.path("daemon.log"))

	var promote, demote, openssh time.Duration
	iters := 0
	for b.Loop() {
		start := time.Now()
		benchOp(b, c, master, "promote", target.Name)
		promoted := time.Now()
		benchOp(b, c, master, "demote", target.Name)
		demoted := time.Now()
		b.StopTimer()
		baseline.run(b)
		openssh += time.Since(demoted)
		b.StartTimer()
		promote += promoted.Sub(start)
		demote += demoted.Sub(promoted)
		iters++
	}
	per := func(d time.Duration) float64 {
		return d.Seconds() / float64(iters)
	}
	b.ReportMetric(per(promote), "promote-s")
	b.ReportMetric(per(demote), "demote-s")
	b.ReportMetric(per(openssh), "openssh-s")
	b.ReportMetric(per(fanOutTime(b, master, logFrom)), "fanout-s")
	b.ReportMetric(openssh.Seconds()/(promote+demote).Seconds(), "speedup")
}

// benchOp runs a role change on the master; a reply that lists an
// unreachable node would time a partial fan-out, so it stops the run.
func benchOp(b *testing.B, c *Cluster, master *Host, args ...string) {
	b.Helper()
	if out := c.MustRun(master, args...); strings.Contains(out,
		"unreachable:") {
		b.Fatalf("ganeti-node %s: %q: a host was not updated",
			strings.Join(args, " "), out)
	}
}

// openSSHScript is the baseline: for every host, one ssh that appends
// the line to authorized_keys unless present; then, for every host,
// one ssh that deletes it again. sed -i keeps the file's mode.
const openSSHScript = `set -eu
key=$1 kh=$2 line=$3
shift 3
opts=(-i "$key" -o IdentitiesOnly=yes -o BatchMode=yes
	-o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$kh"
	-o GlobalKnownHostsFile=/dev/null -F /dev/null)
f='"$GANETI_ROOT/root/.ssh/authorized_keys"'
for hp in "$@"; do
	ssh "${opts[@]}" -p "${hp##*:}" "root@${hp%:*}" \
		"grep -qxF '$line' $f || echo '$line' >> $f"
done
for hp in "$@"; do
	ssh "${opts[@]}" -p "${hp##*:}" "root@${hp%:*}" \
		"sed -i '/ bench-openssh\$/d' $f"
done
`

// openSSHLoop runs openSSHScript with the master's own key and
// known_hosts against every host.
type openSSHLoop struct {
	args []string
}

func newOpenSSHLoop(b *testing.B, master *Host, hosts []*Host) *openSSHLoop {
	b.Helper()
	line := throwawayKey(b, b.TempDir(), 0)
	f := strings.Fields(line)
	args := []string{"-c", openSSHScript, "bench-openssh",
		master.path(ownKeyRel), master.LibPath("known_hosts"),
		f[0] + " " + f[1] + " bench-openssh"}
	for _, h := range hosts {
		args = append(args, h.IP+":"+strconv.Itoa(h.SSHPort))
	}
	return &openSSHLoop{args: args}
}

func (l *openSSHLoop) run(b *testing.B) {
	b.Helper()
	cmd := exec.Command("bash", l.args...)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("openssh baseline: %v: %s", err, out)
	}
}

func fileSize(b *testing.B, path string) int64 {
	b.Helper()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// fanOutRe matches the duration of the master's "ssh fan-out" log line.
var fanOutRe = regexp.MustCompile(`msg="ssh fan-out".* duration=(\S+)`)

// fanOutTime sums the SSH fan-out durations h logged after offset.
func fanOutTime(b *testing.B, h *Host, offset int64) time.Duration {
	b.Helper()
	f, err := os.Open(filepath.Clean(h.path("daemon.log")))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := fanOutRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if d, err := time.ParseDuration(m[1]); err == nil {
			sum += d
		}
	}
	return sum
}
