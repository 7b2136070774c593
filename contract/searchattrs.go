package contract

import "go.temporal.io/sdk/temporal"

// Search attributes (all Keyword), registered at worker start.
var (
	AttrConnectionStatus     = temporal.NewSearchAttributeKeyKeyword("CompanionConnectionStatus")
	AttrMetadataSyncStatus   = temporal.NewSearchAttributeKeyKeyword("MetadataSyncStatus")
	AttrInitializationStatus = temporal.NewSearchAttributeKeyKeyword("InitializationStatus")
	AttrHomeOrg              = temporal.NewSearchAttributeKeyKeyword("HomeOrg")
	AttrCompanionOrg         = temporal.NewSearchAttributeKeyKeyword("CompanionOrg")
	AttrDataSpace            = temporal.NewSearchAttributeKeyKeyword("DataSpace")
	// AttrProtocol is the protocol a run executes (its decimal number), from
	// ProtocolPublished on: set at a child's start, written by a
	// connection's first run with its first status update, by a run that
	// moves just before it continues as new, and carried by continue-as-new.
	// A run without it started under an earlier protocol.
	AttrProtocol = temporal.NewSearchAttributeKeyKeyword("CompanionProtocol")
)

// SearchAttributes lists every custom search attribute of the contract.
func SearchAttributes() []temporal.SearchAttributeKeyKeyword {
	return []temporal.SearchAttributeKeyKeyword{
		AttrConnectionStatus, AttrMetadataSyncStatus, AttrInitializationStatus,
		AttrHomeOrg, AttrCompanionOrg, AttrDataSpace, AttrProtocol,
	}
}
