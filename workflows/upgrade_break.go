//go:build upgradebreak

package workflows

// Built with the upgradebreak tag, the connection workflow makes a change
// no guard protects: the upgrade test must find it (e2e.TestUpgradeTestCanFail).
func init() { breakUpgrade = true }
