// Command etcd is the etcd v3.7.3 server, built from the Go module proxy
// because release downloads are not reachable from our CI machines.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
