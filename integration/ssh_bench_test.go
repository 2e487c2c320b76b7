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
// within promote+demote), speedup (openssh-s over promote-s plus
// demote-s), and for profiling the CPU seconds spent during
// promote+demote by all daemons (cpu-daemons-s) and by everything the
// hosts' sshd ran (cpu-sshd-s: sshd sessions, shells, ssh-update), and
// the same two during the baseline (cpu-daemons-openssh-s: the idle
// daemons' own background work; cpu-sshd-openssh-s).
// scripts/bench-ssh.sh prints them as a table.
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
	var opCPU, baseCPU hostCPU
	iters := 0
	for b.Loop() {
		cpu0 := cpuOf(b, c.Hosts)
		start := time.Now()
		benchOp(b, c, master, "promote", target.Name)
		promoted := time.Now()
		benchOp(b, c, master, "demote", target.Name)
		demoted := time.Now()
		b.StopTimer()
		cpu1 := cpuOf(b, c.Hosts)
		baseline.run(b)
		openssh += time.Since(demoted)
		baseCPU.add(cpuOf(b, c.Hosts).minus(cpu1))
		opCPU.add(cpu1.minus(cpu0))
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
	b.ReportMetric(opCPU.daemons/float64(iters), "cpu-daemons-s")
	b.ReportMetric(opCPU.sshd/float64(iters), "cpu-sshd-s")
	b.ReportMetric(baseCPU.daemons/float64(iters), "cpu-daemons-openssh-s")
	b.ReportMetric(baseCPU.sshd/float64(iters), "cpu-sshd-openssh-s")
}

// hostCPU is CPU time in seconds: used by the daemons themselves, and
// by the processes the hosts' sshd listeners ran and reaped.
type hostCPU struct{ daemons, sshd float64 }

func (a hostCPU) minus(b hostCPU) hostCPU {
	return hostCPU{a.daemons - b.daemons, a.sshd - b.sshd}
}

func (a *hostCPU) add(b hostCPU) {
	a.daemons += b.daemons
	a.sshd += b.sshd
}

// cpuOf reads /proc for the hosts' daemons (utime+stime, threads
// included) and for everything below their sshd listeners: the
// sessions the listener reaped (its cutime+cstime), and the live
// sessions, shells and pooled ssh-update helpers with what they reaped
// themselves. Each CPU second is counted once: a process's own time
// moves into its parent's children-time when it is reaped.
func cpuOf(b *testing.B, hosts []*Host) hostCPU {
	b.Helper()
	children, _ := procTree()
	var sum hostCPU
	for _, h := range hosts {
		sum.daemons += procSeconds(b, h.daemon.cmd.Process.Pid, 14, 15)
		pid := h.sshd.cmd.Process.Pid
		sum.sshd += procSeconds(b, pid, 16, 17)
		for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
			sum.sshd += liveSeconds(queue[0])
			queue = append(queue, children[queue[0]]...)
		}
	}
	return sum
}

// liveSeconds is utime+stime+cutime+cstime of pid in seconds, or 0
// if it has exited since the process tree was read.
func liveSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	var ticks float64
	for _, i := range []int{14, 15, 16, 17} {
		v, _ := strconv.ParseFloat(f[i-3], 64)
		ticks += v
	}
	return ticks / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// procSeconds sums the given fields of /proc/PID/stat, numbered as in
// proc(5) (14 utime, 15 stime, 16 cutime, 17 cstime), in seconds.
func procSeconds(b *testing.B, pid int, fields ...int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces: field 3 is the first
	// after its ")".
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	var ticks float64
	for _, i := range fields {
		v, err := strconv.ParseFloat(f[i-3], 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat field %d: %v", pid, i, err)
		}
		ticks += v
	}
	return ticks / clockTicks
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
