// Pushes every saved Opportunity to sfmirror. All logic lives in SfmirrorTriggerHandler.
trigger SfmirrorOpportunityTrigger on Opportunity (after insert, after update, after delete, after undelete) {
    SfmirrorTriggerHandler.handle();
}
