package rapi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// jackHA1 is md5("jack:Ganeti Remote API:abc123"), computed with
// `openssl md5`, not with this package.
const jackHA1 = "54c12257ee9be413f2f3182435514aae"

func TestHA1_MatchesOpenSSL(t *testing.T) {
	if got := HA1("jack", "abc123"); got != jackHA1 {
		t.Fatalf("HA1: got %s, want %s", got, jackHA1)
	}
}

func TestUsers_Authenticate(t *testing.T) {
	file := strings.Join([]string{
		"# comment",
		"",
		"   # indented comment",
		"plain secret",
		"clear {cleartext}{braces}  write",
		"upper {CLEARTEXT}pw read,write",
		"jack {HA1}" + jackHA1 + " write",
		"lower {ha1}" + strings.ToUpper(HA1("lower", "pw")),
		"reader pw read",
	}, "\n")
	us, err := ParseUsers([]byte(file))
	if err != nil {
		t.Fatalf("ParseUsers: %v", err)
	}
	cases := []struct {
		user, password string
		ok, write      bool
	}{
		{"plain", "secret", true, false},
		{"plain", "secreT", false, false},
		{"plain", "", false, false},
		{"clear", "{braces}", true, true},
		{"upper", "pw", true, true},
		{"jack", "abc123", true, true},
		{"jack", jackHA1, false, false},
		{"jack", "{HA1}" + jackHA1, false, false},
		{"lower", "pw", true, false},
		{"reader", "pw", true, false},
		{"nobody", "pw", false, false},
		{"Jack", "abc123", false, false},
	}
	for _, tc := range cases {
		u := us.Authenticate(tc.user, tc.password)
		if (u != nil) != tc.ok {
			t.Errorf("%s/%q: got ok=%v, want %v", tc.user, tc.password, u != nil, tc.ok)
			continue
		}
		if u != nil && u.Write != tc.write {
			t.Errorf("%s: got write=%v, want %v", tc.user, u.Write, tc.write)
		}
	}
}

func TestUsers_ZeroRefusesEveryone(t *testing.T) {
	var nilUsers *Users
	for _, us := range []*Users{nilUsers, {}} {
		if u := us.Authenticate("root", ""); u != nil {
			t.Fatalf("zero users: got %+v, want nobody", u)
		}
	}
}

func TestParseUsers_Refuses(t *testing.T) {
	cases := map[string]string{
		"one field":       "alice",
		"four fields":     "alice pw write extra",
		"unknown option":  "alice pw admin",
		"empty option":    "alice pw write,",
		"unknown scheme":  "alice {md5}abc",
		"brace no scheme": "alice {pw",
		"short ha1":       "alice {HA1}abcd",
		"bad hex ha1":     "alice {HA1}" + strings.Repeat("g", 32),
		"empty clear":     "alice {cleartext}",
		"colon in name":   "al:ice pw",
		"long name":       strings.Repeat("a", MaxUserNameLen+1) + " pw",
		"non-ascii name":  "älice pw",
		"duplicate user":  "alice pw\nalice pw2",
		"long password":   "alice " + strings.Repeat("p", MaxPasswordLen+20),
	}
	for name, file := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUsers([]byte(file))
			if !errors.Is(err, ErrBadUsersFile) {
				t.Fatalf("got %v, want ErrBadUsersFile", err)
			}
		})
	}
}

func TestParseUsers_NamesTheLine(t *testing.T) {
	_, err := ParseUsers([]byte("a pw\n\nb {x}y\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("got %v, want an error naming line 3", err)
	}
}

func TestUsers_List(t *testing.T) {
	us, err := ParseUsers([]byte("b pw write\na pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []UserInfo{{Name: "a"}, {Name: "b", Write: true}}
	if got := us.List(); !reflect.DeepEqual(got, want) {
		t.Fatalf("List: got %+v, want %+v", got, want)
	}
}

func TestUserLine_Hashes(t *testing.T) {
	line, err := UserLine("jack", "abc123", true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "jack {HA1}" + jackHA1 + " write"; line != want {
		t.Fatalf("got %q, want %q", line, want)
	}
	for _, bad := range [][2]string{{"", "pw"}, {"a b", "pw"}, {"a", ""}} {
		if _, err := UserLine(bad[0], bad[1], false); err == nil {
			t.Errorf("UserLine(%q, %q): got nil error", bad[0], bad[1])
		}
	}
}

func TestSetUser_KeepsOtherLines(t *testing.T) {
	orig := "# admins\nalice pw write\n\n  # keep me\nbob pw\n"
	cases := []struct {
		name, user, line, want string
	}{
		{"replace", "alice", "alice new",
			"# admins\nalice new\n\n  # keep me\nbob pw\n"},
		{"append", "carol", "carol pw",
			"# admins\nalice pw write\n\n  # keep me\nbob pw\ncarol pw\n"},
		{"into empty", "x", "x pw", "x pw\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := orig
			if tc.name == "into empty" {
				in = ""
			}
			got, err := SetUser([]byte(in), tc.user, tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := SetUser([]byte(orig), "dave", "dave {bad}x"); err == nil {
		t.Fatal("SetUser with a bad line: got nil error")
	}
}

func TestRemoveUser(t *testing.T) {
	got, found, err := RemoveUser([]byte("# c\nalice pw\nbob pw\n"), "alice")
	if err != nil || !found || string(got) != "# c\nbob pw\n" {
		t.Fatalf("got %q, %v, %v; want %q, true, nil", got, found, err, "# c\nbob pw\n")
	}
	_, found, err = RemoveUser([]byte("bob pw\n"), "alice")
	if err != nil || found {
		t.Fatalf("missing user: got found=%v err=%v, want false, nil", found, err)
	}
}
