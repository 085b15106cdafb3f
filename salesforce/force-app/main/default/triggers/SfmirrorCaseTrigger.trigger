// Pushes every saved Case to sfmirror. All logic lives in SfmirrorTriggerHandler.
trigger SfmirrorCaseTrigger on Case (after insert, after update, after delete, after undelete) {
    SfmirrorTriggerHandler.handle();
}
