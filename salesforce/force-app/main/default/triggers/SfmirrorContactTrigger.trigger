// Pushes every saved Contact to sfmirror. All logic lives in SfmirrorTriggerHandler.
trigger SfmirrorContactTrigger on Contact (after insert, after update, after delete, after undelete) {
    SfmirrorTriggerHandler.handle();
}
