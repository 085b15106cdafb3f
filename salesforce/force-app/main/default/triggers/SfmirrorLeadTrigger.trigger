// Pushes every saved Lead to sfmirror. All logic lives in SfmirrorTriggerHandler.
trigger SfmirrorLeadTrigger on Lead (after insert, after update, after delete, after undelete) {
    SfmirrorTriggerHandler.handle();
}
